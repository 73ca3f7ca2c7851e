"""The app core: typed settings, the error base, the conversation store and the process-wide shared objects."""
