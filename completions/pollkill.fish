# fish completion for pollkill. Installed as pollkill.fish in a completions directory of fish
# (/usr/share/fish/vendor_completions.d). tests/completions/run checks that it offers exactly
# the subcommands and flags `pollkill SUBCOMMAND --help` lists.

# Policy names: *.toml in the directories `--policy NAME` searches.
function __pollkill_policies
    set -l dirs /etc/pollkill /usr/share/pollkill/policies
    set -q POLLKILL_POLICY_PATH; and set dirs (string split : -- $POLLKILL_POLICY_PATH)
    for dir in $dirs
        for file in $dir/*.toml
            string replace -r '.*/(.*)\.toml$' '$1' -- $file
        end
    end
end

# True when the command line has `--` after `pollkill run`: the rest is the task's command.
function __pollkill_after_dashes
    set -l words (commandline -opc)
    contains -- -- $words
end

set -l subcommands run batch collect report gc policy doctor
complete -c pollkill -f
complete -c pollkill -n "not __fish_seen_subcommand_from $subcommands" -s h -l help -d 'Print help and exit'
complete -c pollkill -n "not __fish_seen_subcommand_from $subcommands" -l version -d 'Print the version and exit'
complete -c pollkill -n "not __fish_seen_subcommand_from $subcommands" -a run -d 'Run one command in its own cgroup, watched'
complete -c pollkill -n "not __fish_seen_subcommand_from $subcommands" -a batch -d 'Run the tasks of a task file in parallel'
complete -c pollkill -n "not __fish_seen_subcommand_from $subcommands" -a collect -d 'Merge the records of a Slurm submission'
complete -c pollkill -n "not __fish_seen_subcommand_from $subcommands" -a report -d 'Summarize a results file, or write HTML or a trace'
complete -c pollkill -n "not __fish_seen_subcommand_from $subcommands" -a gc -d 'Remove run cgroups of pollkill processes that are gone'
complete -c pollkill -n "not __fish_seen_subcommand_from $subcommands" -a policy -d 'Work with policy files'
complete -c pollkill -n "not __fish_seen_subcommand_from $subcommands" -a doctor -d 'Check what this host offers pollkill'

# Every subcommand has -h/--help.
complete -c pollkill -n "__fish_seen_subcommand_from $subcommands; and not __pollkill_after_dashes" -s h -l help -d 'Print help and exit'

# The limit, watchdog and runner flags of run and batch.
set -l limits '__fish_seen_subcommand_from run batch; and not __pollkill_after_dashes'
complete -c pollkill -n $limits -x -l memory -d 'Memory limit (memory.max), e.g. 2GiB'
complete -c pollkill -n $limits -x -l memory-high -d 'Throttling threshold (memory.high)'
complete -c pollkill -n $limits -x -l swap -d 'Swap limit (memory.swap.max)'
complete -c pollkill -n $limits -x -l cpus -d 'CPU quota in CPUs (cpu.max)'
complete -c pollkill -n $limits -x -l pids -d 'Process and thread limit (pids.max)'
complete -c pollkill -n $limits -x -l wall-time -d 'Wall-clock limit, e.g. 30s, 1h30m'
complete -c pollkill -n $limits -x -l wall-time-max -d 'Cap of a percentage --wall-time'
complete -c pollkill -n $limits -x -l cpu-time -d 'CPU time limit of the whole tree'
complete -c pollkill -n $limits -x -l output -d 'Limit on captured output'
complete -c pollkill -n $limits -x -l poll-interval -d 'Sampling interval'
complete -c pollkill -n $limits -x -l hang-after -d 'Hung: no CPU use and no progress for this long'
complete -c pollkill -n $limits -x -l hang-cpu-below -d 'CPUs below which a task counts as idle'
complete -c pollkill -n $limits -x -l spin-after -d 'Spinning: CPU busy without progress for this long'
complete -c pollkill -n $limits -x -l spin-cpu-above -d 'CPUs at or above which a task counts as busy'
complete -c pollkill -n $limits -r -F -l heartbeat -d 'A file whose change counts as progress'
complete -c pollkill -n $limits -x -l kill-grace -d 'SIGTERM to SIGKILL delay'
complete -c pollkill -n $limits -x -l orphans -a 'kill wait' -d 'Processes left after the main one exits'
complete -c pollkill -n $limits -x -l thrash-after -d 'Thrashing: stalled on memory for this long'
complete -c pollkill -n $limits -x -l thrash-full-above -d 'Share of time stalled on memory that is thrashing'
complete -c pollkill -n $limits -x -l missing-controllers -a 'error warn' -d 'When a limit\'s controller is missing'
complete -c pollkill -n $limits -x -l cgroup-v1 -a 'auto off' -d 'Hybrid hosts: limits through cgroup v1'
complete -c pollkill -n $limits -x -l systemd-scope -a 'auto never always' -d 'Ask systemd for a delegated scope'
complete -c pollkill -n $limits -x -l mode -a 'auto cgroup subreaper' -d 'A cgroup per task, or a subreaper'
complete -c pollkill -n $limits -x -l policy -a '(__pollkill_policies; __fish_complete_suffix .toml)' -d 'Policy file or name'
complete -c pollkill -n $limits -x -l cgroup-root -a '(__fish_complete_directories)' -d 'Cgroup under which to create task cgroups'

# run
set -l run '__fish_seen_subcommand_from run; and not __pollkill_after_dashes'
complete -c pollkill -n $run -r -F -l result -d 'Write the JSON result to FILE (- for stdout)'
complete -c pollkill -n $run -x -a '(__fish_complete_directories)' -l evidence-dir -d 'Where the evidence of a stuck task goes'
complete -c pollkill -n $run -s q -l quiet -d 'Print nothing about the outcome'
complete -c pollkill -n $run -s v -l verbose -d 'Print the outcome even when ok'
complete -c pollkill -n '__fish_seen_subcommand_from run; and __pollkill_after_dashes' -x -a '(__fish_complete_subcommand --fcs-skip=2)'

# batch
set -l batch '__fish_seen_subcommand_from batch'
complete -c pollkill -n $batch -F
complete -c pollkill -n $batch -x -s j -l jobs -d 'Tasks at once'
complete -c pollkill -n $batch -r -F -l results -d 'Results file, JSON Lines'
complete -c pollkill -n $batch -x -a '(__fish_complete_directories)' -l logs -d 'Directory for per-attempt logs'
complete -c pollkill -n $batch -r -F -l joblog -d 'Also write a GNU parallel joblog'
complete -c pollkill -n $batch -x -l retries -d 'Retry a task up to N times'
complete -c pollkill -n $batch -l resume -d 'Skip tasks with a final record in the results file'
complete -c pollkill -n $batch -l dry-run -d 'Print the tasks and run nothing'
complete -c pollkill -n $batch -x -l sync-interval -d 'Most time between a record and its fdatasync'
complete -c pollkill -n $batch -l progress -d 'Show progress even when not on a terminal (=line, =full, =off)'
# Its mode only after '=', never as the next word.
complete -c pollkill -n "$batch; and string match -q -- '--progress=*' (commandline -ct)" -f -a '--progress=off --progress=line --progress=full'
complete -c pollkill -n $batch -l no-progress -d 'No progress (--progress=off)'
complete -c pollkill -n $batch -s q -l quiet -d 'Print no summary'
complete -c pollkill -n $batch -s v -l verbose -d 'Print every attempt as it ends'
complete -c pollkill -n $batch -l slurm -d 'Submit the tasks as a Slurm job array'
complete -c pollkill -n $batch -x -l launcher -a 'local srun' -d 'Where tasks run'
complete -c pollkill -n $batch -x -a '(__fish_complete_directories)' -l results-dir -d 'Slurm: the shared directory for records and logs'
complete -c pollkill -n $batch -x -l chunk -a 'auto' -d 'Slurm: tasks per array element'
complete -c pollkill -n $batch -x -l sbatch-arg -d 'An argument for sbatch'
complete -c pollkill -n $batch -x -l srun-arg -d 'An argument for each srun'

# collect
complete -c pollkill -n '__fish_seen_subcommand_from collect' -x -a '(__fish_complete_directories)'
complete -c pollkill -n '__fish_seen_subcommand_from collect' -r -F -l results -d 'Results file to append to'

# report
set -l report '__fish_seen_subcommand_from report'
complete -c pollkill -n $report -x -a '(__fish_complete_suffix .jsonl)'
complete -c pollkill -n $report -l json -d 'Print the summary as JSON'
complete -c pollkill -n $report -r -F -l html -d 'Also write a self-contained HTML page to FILE'
complete -c pollkill -n $report -r -F -l trace -d 'Also write Chrome/Perfetto trace-event JSON to FILE'
complete -c pollkill -n $report -x -l memory -d 'The memory limit to draw on the HTML page'
complete -c pollkill -n $report -x -l wall-time -d 'The wall-time limit to draw on the HTML page'

# gc
complete -c pollkill -n '__fish_seen_subcommand_from gc' -x -l cgroup-root -a '(__fish_complete_directories)' -d 'The run root to clean'
complete -c pollkill -n '__fish_seen_subcommand_from gc' -x -l cgroup-v1 -a 'auto off' -d 'Also clean cgroup v1 run cgroups'

# doctor
set -l doctor '__fish_seen_subcommand_from doctor'
complete -c pollkill -n $doctor -x -l policy -a '(__pollkill_policies; __fish_complete_suffix .toml)' -d 'Policy file or name'
complete -c pollkill -n $doctor -x -l cgroup-root -a '(__fish_complete_directories)' -d 'Cgroup under which to create task cgroups'
complete -c pollkill -n $doctor -x -l cgroup-v1 -a 'auto off' -d 'Hybrid hosts: limits through cgroup v1'
complete -c pollkill -n $doctor -x -l systemd-scope -a 'auto never always' -d 'Ask systemd for a delegated scope'
complete -c pollkill -n $doctor -l json -d 'Print the checks as JSON'

# policy check
complete -c pollkill -n '__fish_seen_subcommand_from policy; and not __fish_seen_subcommand_from check' -x -a check -d 'Validate policy files'
complete -c pollkill -n '__fish_seen_subcommand_from policy; and __fish_seen_subcommand_from check' -l print -d 'Print the effective policy'
complete -c pollkill -n '__fish_seen_subcommand_from policy; and __fish_seen_subcommand_from check' -x -a '(__pollkill_policies; __fish_complete_suffix .toml)'
