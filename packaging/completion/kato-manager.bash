# bash completion for kato-manager(1).
#
# To add a command or a flag: list the command in _kato_manager_commands (or
# its subcommand in _kato_manager_subcommands), its flags in
# _kato_manager_flags, and a flag that takes a value in
# _kato_manager_takes_value. The packaging tests check this file against
# `kato-manager --help` and every `COMMAND --help`.

_kato_manager_commands='start stop restart list status logs gc install-units workers queue serve'

_kato_manager_subcommands() {
	case $1 in
	workers) echo 'start stop restart scale health stats' ;;
	queue) echo 'enqueue list retry-failed stats' ;;
	esac
}

# Flags of a command, named as "command" or "command subcommand".
_kato_manager_flags() {
	case $1 in
	start) echo '--auto-act-method --auto-act-threshold --id --indexer-type --log-level -l --max-predictions --max-seq-length --name --network --no-predictions --no-sort --persistence --port -p --processor --processor-command --quiescence --recall-threshold --search-depth --smoothness --tag -t --timeout --update-frequencies --zmq-port' ;;
	stop) echo '--all --id --name --no-mongo --with-mongo' ;;
	restart) echo '--timeout' ;;
	list | status) echo '--json' ;;
	logs) echo '--follow -f --lines -n' ;;
	gc | install-units) ;;
	serve) echo '--listen' ;;
	'workers start') echo '--poll-interval --workers -n' ;;
	'workers stop' | 'workers restart' | 'workers scale') ;;
	'workers health') echo '--json --restart-unhealthy' ;;
	'workers stats') echo '--json' ;;
	'queue enqueue') echo '--priority' ;;
	'queue list') echo '--json --limit --status' ;;
	'queue retry-failed') ;;
	'queue stats') echo '--json' ;;
	esac
	echo '--help'
}

# Flags that take a value, of every command.
_kato_manager_takes_value() {
	case $1 in
	--config | --registry | --id | --indexer-type | --max-predictions | --max-seq-length | --name | \
		--persistence | --port | -p | --processor-command | --quiescence | --recall-threshold | --timeout | \
		--smoothness | --auto-act-method | --auto-act-threshold | --search-depth | --log-level | -l | \
		--processor | --tag | -t | --network | \
		--zmq-port | --lines | -n | --listen | --poll-interval | --workers | --priority | --limit | --status)
		return 0
		;;
	esac
	return 1
}

# The instance IDs in the registry, for commands that take an instance.
_kato_manager_instances() {
	local registry=${KATO_REGISTRY:-/var/lib/kato/instances.toml} i
	for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
		case ${COMP_WORDS[i]} in
		--registry) registry=${COMP_WORDS[i + 1]} ;;
		--registry=*) registry=${COMP_WORDS[i]#--registry=} ;;
		esac
	done
	[ -r "$registry" ] && sed -n 's/^\[instances\.\([A-Za-z0-9_-]*\)\][[:space:]]*$/\1/p' "$registry"
}

_kato_manager() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=
	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
	COMPREPLY=()

	# The command and subcommand: the first words that are neither flags
	# nor flag values.
	local cmd= sub= args=0 i w
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		case $w in
		-*=*) continue ;;
		-*)
			_kato_manager_takes_value "$w" && ((i++))
			continue
			;;
		esac
		if [ -z "$cmd" ]; then
			cmd=$w
		elif [ -z "$sub" ] && [ -n "$(_kato_manager_subcommands "$cmd")" ]; then
			sub=$w
		else
			((args++))
		fi
	done

	case $prev in
	--config | --registry)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--processor-command)
		COMPREPLY=($(compgen -c -- "$cur"))
		return
		;;
	--indexer-type)
		COMPREPLY=($(compgen -W 'VI' -- "$cur"))
		return
		;;
	--status)
		COMPREPLY=($(compgen -W 'pending processing completed failed skipped' -- "$cur"))
		return
		;;
	--id | --name)
		if [ "$cmd" = stop ]; then
			COMPREPLY=($(compgen -W "$(_kato_manager_instances)" -- "$cur"))
		fi
		return
		;;
	esac
	_kato_manager_takes_value "$prev" && return

	if [ -z "$cmd" ]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W '--config --registry --version --help -h' -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$_kato_manager_commands" -- "$cur"))
		fi
		return
	fi
	local subs
	subs=$(_kato_manager_subcommands "$cmd")
	if [ -n "$subs" ] && [ -z "$sub" ]; then
		COMPREPLY=($(compgen -W "$subs" -- "$cur"))
		return
	fi
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(_kato_manager_flags "$cmd${sub:+ $sub}")" -- "$cur"))
		return
	fi
	case $cmd in
	stop | restart | logs)
		((args == 0)) && COMPREPLY=($(compgen -W "$(_kato_manager_instances)" -- "$cur"))
		;;
	esac
}

complete -F _kato_manager kato-manager
