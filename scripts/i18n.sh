#!/usr/bin/env bash
# Refresh the translation catalogs after changing what the pages say:
#   scripts/i18n.sh            extract every _() and N_() message from app.py, pages/ and ui/, and the N_() marked
#                              messages below them (errors and notes made in core/, llm/, personas/, team/, rag/),
#                              and merge them into each ui/locales/<lang>/LC_MESSAGES/studio.po (new ones come in
#                              untranslated). server/ is left out: the HTTP API speaks English.
# Then translate the empty msgstr entries; tests/test_i18n.py fails while one is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
pot=$(mktemp --suffix=.pot)
trap 'rm -f "$pot"' EXIT
$PY -m babel.messages.frontend extract --no-location --omit-header -k _ -k N_ -o "$pot" \
  app.py pages ui core llm personas team rag >/dev/null
for lang in zh_CN uk; do
  po="ui/locales/$lang/LC_MESSAGES/studio.po"
  if [ -f "$po" ]; then
    $PY -m babel.messages.frontend update --no-fuzzy-matching --ignore-obsolete --no-wrap --omit-header -i "$pot" -o "$po" -l "$lang" >/dev/null
  else
    $PY -m babel.messages.frontend init -i "$pot" -o "$po" -l "$lang" >/dev/null
  fi
done
echo "i18n: catalogs updated; translate the empty entries"
