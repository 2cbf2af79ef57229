#!/usr/bin/zsh -f
# Prints what zsh completes for a command line, one match a line: an interactive zsh in a
# pseudo-terminal (zsh/zpty) loads the completion system, the TAB key is pressed at the end
# of the line, and every match that reaches compadd is written to a file.
#
#   complete.zsh FPATH_DIR|- 'pollkill run --'
#
# FPATH_DIR is put first in $fpath (where _pollkill is); '-' keeps zsh's own $fpath (an
# installed completion).
emulate -L zsh
zmodload zsh/zpty || exit 2
dir=$1 line=$2
out=$(mktemp /tmp/pollkill-zsh-complete-XXXXXX) || exit 2
trap 'rm -f $out; zpty -d pk 2>/dev/null' EXIT

zpty pk zsh -f -i
[[ $dir != - ]] && zpty -w pk "fpath=(${(q)dir} \$fpath)"
zpty -w pk "PS1=''; autoload -U compinit; compinit -u -D"
zpty -w pk "zstyle ':completion:*' list-grouped false; bindkey '^I' complete-word"
# compadd with -O, -A or -D only fills an array for the caller: not a match offered yet.
zpty -w pk "compadd() {
  if (( \${@[(I)-[OAD]]} )); then builtin compadd \"\$@\"; return; fi
  local -a pk_matches
  builtin compadd -O pk_matches \"\$@\"
  (( \$#pk_matches )) && print -rl -- \$pk_matches >>${(q)out}
  builtin compadd \"\$@\"
}"
zpty -w pk "comppostfuncs=(pk_done); pk_done() { print -r -- '-- pk done --' >>${(q)out} }"
zpty -w -n pk "$line"$'\t'
for i in {1..600}; do
  grep -qx -- '-- pk done --' $out && break
  sleep 0.05
done
grep -qx -- '-- pk done --' $out || { print -u2 "complete.zsh: no completion for '$line'"; exit 1 }
grep -vx -- '-- pk done --' $out | sort -u
