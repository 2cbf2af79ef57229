# bash completion for pollkill                                        -*- shell-script -*-

# Policy names: *.toml in the directories `--policy NAME` searches.
_pollkill_policies() {
  local IFS=: dir f
  for dir in ${POLLKILL_POLICY_PATH-/etc/pollkill:/usr/share/pollkill/policies}; do
    for f in "$dir"/*.toml; do
      [[ -e $f ]] && f=${f##*/} && printf '%s\n' "${f%.toml}"
    done
  done
}

_pollkill() {
  local cur prev words cword split
  _init_completion -s || return

  local limits='--memory --memory-high --swap --cpus --pids --wall-time --wall-time-max --cpu-time
    --output --poll-interval --hang-after --hang-cpu-below --spin-after --spin-cpu-above --heartbeat
    --kill-grace --orphans --thrash-after --thrash-full-above --missing-controllers
    --cgroup-v1 --systemd-scope --mode --policy --cgroup-root'
  local cmd='' sub='' i
  for ((i = 1; i < cword; i++)); do
    case ${words[i]} in
      --) [[ $cmd == run ]] && { _command_offset $((i + 1)); return; } ;;
      -*) ;;
      *) if [[ -z $cmd ]]; then cmd=${words[i]}; elif [[ $cmd == policy && -z $sub ]]; then sub=${words[i]}; fi ;;
    esac
  done

  # --progress takes its mode only after '=' (never the next word): _init_completion -s split
  # "--progress=fu" into prev and cur.
  if [[ $prev == --progress ]] && $split; then
    COMPREPLY=($(compgen -W 'off line full' -- "$cur"))
    return
  fi

  case $prev in
    --policy)
      COMPREPLY=($(compgen -W "$(_pollkill_policies)" -- "$cur"))
      _filedir toml
      return ;;
    --orphans) COMPREPLY=($(compgen -W 'kill wait' -- "$cur")); return ;;
    --missing-controllers) COMPREPLY=($(compgen -W 'error warn' -- "$cur")); return ;;
    --cgroup-v1) COMPREPLY=($(compgen -W 'off auto' -- "$cur")); return ;;
    --systemd-scope) COMPREPLY=($(compgen -W 'auto never always' -- "$cur")); return ;;
    --mode) COMPREPLY=($(compgen -W 'auto cgroup subreaper' -- "$cur")); return ;;
    --heartbeat | --result | --results | --joblog) _filedir; return ;;
    --html) _filedir html; return ;;
    --trace) _filedir json; return ;;
    --logs | --cgroup-root | --results-dir | --evidence-dir) _filedir -d; return ;;
    --launcher) COMPREPLY=($(compgen -W 'local srun' -- "$cur")); return ;;
    --sbatch-arg | --srun-arg) return ;;
    --chunk) COMPREPLY=($(compgen -W 'auto' -- "$cur")); return ;;
    --memory | --memory-high | --swap | --cpus | --pids | --wall-time | --wall-time-max | \
      --cpu-time | --output | --poll-interval | --hang-after | --hang-cpu-below | --spin-after | \
      --spin-cpu-above | --kill-grace | --thrash-after | --thrash-full-above | \
      --jobs | -j | --retries | --sync-interval)
      return ;;
  esac

  case $cmd in
    '') COMPREPLY=($(compgen -W 'run batch collect report policy doctor gc --version --help' -- "$cur")) ;;
    run)
      if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$limits --result --evidence-dir --quiet --verbose --help --" -- "$cur"))
      else
        COMPREPLY=($(compgen -W '--' -- "$cur"))
      fi ;;
    batch)
      if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$limits --jobs --results --logs --joblog
          --retries --resume --dry-run --sync-interval --progress --no-progress --quiet --verbose --help
          --slurm --chunk --launcher --results-dir --sbatch-arg --srun-arg" -- "$cur"))
      else
        _filedir
      fi ;;
    collect)
      if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W '--results --help' -- "$cur")); else _filedir -d; fi ;;
    report)
      if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '--json --html --trace --memory --wall-time --help' -- "$cur"))
      else
        _filedir jsonl
      fi ;;
    policy)
      if [[ -z $sub ]]; then
        COMPREPLY=($(compgen -W 'check' -- "$cur"))
      elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '--print --help' -- "$cur"))
      else
        COMPREPLY=($(compgen -W "$(_pollkill_policies)" -- "$cur"))
        _filedir toml
      fi ;;
    doctor) COMPREPLY=($(compgen -W '--policy --cgroup-root --cgroup-v1 --systemd-scope --json --help' -- "$cur")) ;;
    gc) COMPREPLY=($(compgen -W '--cgroup-root --cgroup-v1 --help' -- "$cur")) ;;
  esac
} && complete -F _pollkill pollkill

# ex: filetype=sh
