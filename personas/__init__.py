"""Personas: the registry of LoRA and prompt personas, and the fine-tune command that makes LoRA ones."""
