# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_evergreen_global_optspecs
    string join \n h/help V/version
end

function __fish_evergreen_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_evergreen_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_evergreen_using_subcommand
    set -l cmd (__fish_evergreen_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c evergreen -n "__fish_evergreen_needs_command" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_needs_command" -s V -l version -d 'Print version'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "run" -d 'Run a group until SIGINT or SIGTERM'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "validate" -d 'Check a group file and print every error with its JSON path'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "import" -d 'Make a group file from a Greengrass V1 group as you saved it: `aws greengrass get-group-version` and `get-*-definition-version` outputs (files, a directory of them, or one combined JSON), or CloudFormation templates with AWS::Greengrass resources (JSON or YAML, short-form tags included)'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "function" -d 'Greengrass V1 Python functions: package a function\'s directory'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "fleet" -d 'Fleet deployments: make a signing key, sign a deployment document for a bundle'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "group" -d 'Store validated groups as immutable versions, and inspect them'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "status" -d 'Show the running runtime and each component: state, pid, uptime, restarts, memory, messages in and out, queue and drops'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "logs" -d 'Print the last lines of a component\'s log, or the runtime\'s, and with -f follow it'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "deploy" -d 'Deploy a stored group version (id or unique prefix), a group file (stored as a version with its programs and code first), or a group bundle (`group export`; imported first, every digest checked), to the running runtime'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "redeploy" -d 'Deploy again the group version of an earlier deployment'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "reset" -d 'Stop every component of the running runtime (deploy the empty group)'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "restart" -d 'Start a component again now, by name, Id or ARN: a Failed one without waiting for its cool-down, a running one after a graceful stop'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "stop" -d 'Stop a component, by name, Id or ARN, and keep it stopped: no restart policy, message or cool-down starts it again until `evergreen start` or a new deployment (a restart of the runtime starts it too). `status` shows it `Stopped (operator)`'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "start" -d 'Start a component that `evergreen stop` stopped: a pinned one now, an on-demand one at its next message. A component that was not stopped by an operator is left as it is'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "deployments" -d 'The running runtime\'s deployment history, newest first'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "certs" -d 'Certificates for the local MQTT server without the cloud: a group CA, the server\'s certificate and device certificates, written owner-only (0600, directory 0700) under <root>/certs/local'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "secrets" -d 'Secret values for the group\'s secret resources, stored encrypted under <root>/secrets (see docs/services.md, "Secrets"). A value is used from the next deployment on'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "connectors" -d 'List the connectors built into this binary, with their parameters and topics'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "check" -d 'The health check to run first: configuration and group, certificates, listeners\' ports, the upstream endpoint (DNS, TCP, TLS with the core\'s certificate), clock, disk space and container support; one line per check, OK, WARN or FAIL with a fix'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "support-bundle" -d 'Write one archive for a bug report: versions, the configuration and the group (secrets and keys redacted), status, deployment history, the last lines of every log, `check`\'s report and kernel and cgroup facts, with a MANIFEST.txt of what is in it'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "default-group" -d 'Print the embedded default group, a starting point for your own'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "completions" -d 'Print the completion script for SHELL, generated from this binary\'s commands'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "man" -d 'Print the man page evergreen(1), or with --dir write it and one page per command (evergreen-status.1, …) into DIR: generated from the same definitions as --help'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "connector" -d 'Run a built-in connector over stdio (used by the supervisor)'
complete -c evergreen -n "__fish_evergreen_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evergreen -n "__fish_evergreen_using_subcommand run" -l group -d 'Group file (JSON; top-level keys are the definition-version names)' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand run" -l root -d 'Runtime root (logs, state); overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand run" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand run" -l log-format -d 'How the runtime\'s own log lines are written: `greengrass` (`[time][LEVEL]-(arn) …`, as V1) or `json` (one object per line, for journald or Loki). Component logs keep Greengrass\'s format' -r -f -a "greengrass\t''
json\t''"
complete -c evergreen -n "__fish_evergreen_using_subcommand run" -l log-level -d 'The runtime\'s own log level: DEBUG, INFO, WARN, ERROR or FATAL [default: `evergreen.logLevel`, else the group\'s GreengrassSystem Logger definition, else INFO]' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand validate" -l config -d 'Core configuration file (for allowFunctionsToRunAsRoot and the core thing)' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand validate" -l json -d 'Print `{"file", "valid", "summary", "errors": [{"path", "id", "message"}]}`'
complete -c evergreen -n "__fish_evergreen_using_subcommand validate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand import" -l from -d 'What the inputs are: `cli` outputs, `cloudformation` templates, or `auto` (told by their content)' -r -f -a "auto\t''
cli\t''
cloudformation\t''"
complete -c evergreen -n "__fish_evergreen_using_subcommand import" -s o -l output -d 'Write the group file here (and a template\'s inline function code beside it, under functions/) instead of printing the group on stdout' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand import" -l region -d 'The region `AWS::Region` stands for in templates [default: a placeholder the report lists]' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand import" -l account -d 'The account id `AWS::AccountId` stands for in templates [default: a placeholder the report lists]' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand import" -l json -d 'Print the report on stderr as JSON: {"status","output","todo","notes","validation","files"}'
complete -c evergreen -n "__fish_evergreen_using_subcommand import" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand function; and not __fish_seen_subcommand_from package help" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand function; and not __fish_seen_subcommand_from package help" -f -a "package" -d 'Zip a Python function\'s directory (its handler module and what it vendors, such as greengrasssdk) into the file a group\'s CodeUri names'
complete -c evergreen -n "__fish_evergreen_using_subcommand function; and not __fish_seen_subcommand_from package help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evergreen -n "__fish_evergreen_using_subcommand function; and __fish_seen_subcommand_from package" -s o -l output -d 'The archive to write [default: DIR.zip beside DIR]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand function; and __fish_seen_subcommand_from package" -l json -d 'Print `{"archive", "files", "bytes", "hasSdk"}` instead of the archive\'s path'
complete -c evergreen -n "__fish_evergreen_using_subcommand function; and __fish_seen_subcommand_from package" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand function; and __fish_seen_subcommand_from help" -f -a "package" -d 'Zip a Python function\'s directory (its handler module and what it vendors, such as greengrasssdk) into the file a group\'s CodeUri names'
complete -c evergreen -n "__fish_evergreen_using_subcommand function; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and not __fish_seen_subcommand_from keygen sign deploy update status abort help" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and not __fish_seen_subcommand_from keygen sign deploy update status abort help" -f -a "keygen" -d 'Make a signing key: writes it to KEY_FILE (owner-only; keep it secret) and prints the public key to put in each gateway\'s `evergreen.fleet.trustedKeys`'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and not __fish_seen_subcommand_from keygen sign deploy update status abort help" -f -a "sign" -d 'Write the signed deployment document for BUNDLE (`evergreen group export`) to standard output: its size and SHA-256, where gateways fetch it (--url) or the bundle itself (--inline, for small groups), who it is for, and the fleet\'s next sequence number'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and not __fish_seen_subcommand_from keygen sign deploy update status abort help" -f -a "deploy" -d 'Roll BUNDLE out over the broker: a canary stage, then batches, each signed for its gateways and published on their topics; waits for every gateway\'s status, and halts (leaving the rest untouched) once more than --max-failures have failed'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and not __fish_seen_subcommand_from keygen sign deploy update status abort help" -f -a "update" -d 'Roll a new Evergreen release out over the broker, with the same stages and halt rules as `deploy`: each gateway downloads the binary for its target, checks it, restarts onto it and reports `Success` once the new runtime is healthy, or `RolledBack` (its previous release running again) with the reason'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and not __fish_seen_subcommand_from keygen sign deploy update status abort help" -f -a "status" -d 'The fleet as the gateways\' retained messages show it: per gateway its groups, version, last deployment status and health; and the rollouts in progress. With --watch, every change as it comes. Exit status 0, 1 when the broker cannot be reached'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and not __fish_seen_subcommand_from keygen sign deploy update status abort help" -f -a "abort" -d 'Stop the rollout in progress of a fleet before its next stage (the gateways of the stage under way finish it). Exit status 0 when one was aborted, 1 when none is running'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and not __fish_seen_subcommand_from keygen sign deploy update status abort help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from keygen" -l json -d 'Print `{"keyFile": …, "publicKey": …}` instead of the bare public key'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from keygen" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from sign" -l key -d 'The signing key (`evergreen fleet keygen`)' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from sign" -l fleet -d 'The fleet\'s name; sequences count per fleet' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from sign" -l url -d 'Where gateways download the bundle: https://, http:// or file://' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from sign" -l sequence -d 'This deployment\'s number: higher than any earlier one of the fleet' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from sign" -l things -d 'Thing names the document is for (comma-separated)' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from sign" -l groups -d 'Fleet groups the document is for (comma-separated)' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from sign" -l inline -d 'Put the bundle in the document (at most 64 KiB)'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from sign" -l json -d 'Print `{"fleet", "sequence", "bundleSize", "bundleSha256", "document"}`, where `document` is the signed document as text (what to publish), instead of the document alone'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from sign" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l key -d 'The signing key (`evergreen fleet keygen`)' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l fleet -d 'The fleet\'s name; sequences count per fleet' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l url -d 'Where gateways download the bundle: https://, http:// or file://' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l sequence -d 'This deployment\'s number [default: one more than any the gateways or a rollout reported for the fleet]' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l things -d 'The gateways (thing names, comma-separated), in rollout order' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l group -d 'Every gateway whose health names this fleet group, by thing name' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l canary -d 'Gateways in the first stage' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l batch -d 'Gateways per stage after the canary' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l max-failures -d 'Failed gateways the rollout tolerates before it halts' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l stage-timeout-secs -d 'Seconds a stage may take; a gateway that has not reported by then counts as failed' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l broker -d 'The broker: mqtt://host[:port] or mqtts://host[:port]' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l ca -d 'mqtts: the CA certificate(s) the broker\'s certificate must chain to' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l cert -d 'mqtts: the operator\'s certificate' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l cert-key -d 'mqtts: the operator\'s private key' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l client-id -d 'The client id [default: evergreen-operator-<pid>]' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l topic-prefix -d 'The fleet topics\' prefix (the gateways\' evergreen.fleet.topicPrefix)' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l discover-secs -d 'Seconds to gather the gateways\' retained messages before acting' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l inline -d 'Put the bundle in the document (at most 64 KiB)'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -l json -d 'Print JSON (one object per line) instead of text'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from deploy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l version -d 'The release\'s version: what `evergreen --version` of each binary prints after `evergreen ` (checked here for a binary this machine can run, and on each gateway)' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l binary -d 'A binary and its target, as TARGET=FILE (targets: x86_64, aarch64; armv7 reserved); repeat for a fleet of mixed gateways' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l url-base -d 'Where gateways download the binaries: each is fetched from URL_BASE/<its file name> (https://, http:// or file://)' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l key -d 'The signing key (`evergreen fleet keygen`)' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l fleet -d 'The fleet\'s name; sequences count per fleet' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l sequence -d 'This deployment\'s number [default: one more than any the gateways or a rollout reported for the fleet]' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l things -d 'The gateways (thing names, comma-separated), in rollout order' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l group -d 'Every gateway whose health names this fleet group, by thing name' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l canary -d 'Gateways in the first stage' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l batch -d 'Gateways per stage after the canary' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l max-failures -d 'Failed gateways the rollout tolerates before it halts' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l stage-timeout-secs -d 'Seconds a stage may take; a gateway that has not reported by then counts as failed' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l broker -d 'The broker: mqtt://host[:port] or mqtts://host[:port]' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l ca -d 'mqtts: the CA certificate(s) the broker\'s certificate must chain to' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l cert -d 'mqtts: the operator\'s certificate' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l cert-key -d 'mqtts: the operator\'s private key' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l client-id -d 'The client id [default: evergreen-operator-<pid>]' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l topic-prefix -d 'The fleet topics\' prefix (the gateways\' evergreen.fleet.topicPrefix)' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l discover-secs -d 'Seconds to gather the gateways\' retained messages before acting' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -l json -d 'Print JSON (one object per line) instead of text'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from status" -l fleet -d 'Only this fleet\'s deployments and rollout' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from status" -l watch-secs -d 'With --watch: stop after this many seconds' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from status" -l broker -d 'The broker: mqtt://host[:port] or mqtts://host[:port]' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from status" -l ca -d 'mqtts: the CA certificate(s) the broker\'s certificate must chain to' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from status" -l cert -d 'mqtts: the operator\'s certificate' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from status" -l cert-key -d 'mqtts: the operator\'s private key' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from status" -l client-id -d 'The client id [default: evergreen-operator-<pid>]' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from status" -l topic-prefix -d 'The fleet topics\' prefix (the gateways\' evergreen.fleet.topicPrefix)' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from status" -l discover-secs -d 'Seconds to gather the gateways\' retained messages before acting' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from status" -l watch -d 'Go on printing each change until interrupted (or --watch-secs)'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from status" -l json -d 'Print JSON (one object per line) instead of text'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from abort" -l fleet -d 'The fleet whose rollout stops' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from abort" -l broker -d 'The broker: mqtt://host[:port] or mqtts://host[:port]' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from abort" -l ca -d 'mqtts: the CA certificate(s) the broker\'s certificate must chain to' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from abort" -l cert -d 'mqtts: the operator\'s certificate' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from abort" -l cert-key -d 'mqtts: the operator\'s private key' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from abort" -l client-id -d 'The client id [default: evergreen-operator-<pid>]' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from abort" -l topic-prefix -d 'The fleet topics\' prefix (the gateways\' evergreen.fleet.topicPrefix)' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from abort" -l discover-secs -d 'Seconds to gather the gateways\' retained messages before acting' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from abort" -l json -d 'Print JSON (one object per line) instead of text'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from abort" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from help" -f -a "keygen" -d 'Make a signing key: writes it to KEY_FILE (owner-only; keep it secret) and prints the public key to put in each gateway\'s `evergreen.fleet.trustedKeys`'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from help" -f -a "sign" -d 'Write the signed deployment document for BUNDLE (`evergreen group export`) to standard output: its size and SHA-256, where gateways fetch it (--url) or the bundle itself (--inline, for small groups), who it is for, and the fleet\'s next sequence number'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from help" -f -a "deploy" -d 'Roll BUNDLE out over the broker: a canary stage, then batches, each signed for its gateways and published on their topics; waits for every gateway\'s status, and halts (leaving the rest untouched) once more than --max-failures have failed'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from help" -f -a "update" -d 'Roll a new Evergreen release out over the broker, with the same stages and halt rules as `deploy`: each gateway downloads the binary for its target, checks it, restarts onto it and reports `Success` once the new runtime is healthy, or `RolledBack` (its previous release running again) with the reason'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from help" -f -a "status" -d 'The fleet as the gateways\' retained messages show it: per gateway its groups, version, last deployment status and health; and the rollouts in progress. With --watch, every change as it comes. Exit status 0, 1 when the broker cannot be reached'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from help" -f -a "abort" -d 'Stop the rollout in progress of a fleet before its next stage (the gateways of the stage under way finish it). Exit status 0 when one was aborted, 1 when none is running'
complete -c evergreen -n "__fish_evergreen_using_subcommand fleet; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and not __fish_seen_subcommand_from create-version list export import show help" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and not __fish_seen_subcommand_from create-version list export import show help" -f -a "create-version" -d 'Validate a group file as `evergreen run` would and store it as an immutable version under <root>/deployments/versions'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and not __fish_seen_subcommand_from create-version list export import show help" -f -a "list" -d 'List the stored versions, newest first'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and not __fish_seen_subcommand_from create-version list export import show help" -f -a "export" -d 'Write a stored version and every program and code directory it runs as one bundle file (a tar): what `group import` or `deploy` on another gateway takes'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and not __fish_seen_subcommand_from create-version list export import show help" -f -a "import" -d 'Store the version in a bundle (`group export`), every digest checked and the group validated, as `create-version` stores a file'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and not __fish_seen_subcommand_from create-version list export import show help" -f -a "show" -d 'Print a stored version\'s group, its content checked against its id'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and not __fish_seen_subcommand_from create-version list export import show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from create-version" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from create-version" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from create-version" -l json -d 'Print `{"id", "existed", "directory"}` (or, for an invalid group, what `validate --json` prints)'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from create-version" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from list" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from list" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from list" -l json -d 'Print JSON (full ids and all metadata) instead of a table'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from export" -s o -l output -d 'The bundle to write [default: group-<short id>.tar in the current directory]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from export" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from export" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from export" -l json -d 'Print `{"id", "file"}` instead of the bundle\'s path'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from import" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from import" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from import" -l json -d 'Print `{"id", "existed"}` (or, for an invalid group, what `validate --json` prints)'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from show" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from show" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from show" -l json -d 'Print its metadata and group as one JSON object'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "create-version" -d 'Validate a group file as `evergreen run` would and store it as an immutable version under <root>/deployments/versions'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the stored versions, newest first'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "export" -d 'Write a stored version and every program and code directory it runs as one bundle file (a tar): what `group import` or `deploy` on another gateway takes'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "import" -d 'Store the version in a bundle (`group export`), every digest checked and the group validated, as `create-version` stores a file'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print a stored version\'s group, its content checked against its id'
complete -c evergreen -n "__fish_evergreen_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evergreen -n "__fish_evergreen_using_subcommand status" -l socket -d 'Control socket [default: `evergreen.controlSocket`, else <root>/run/control.sock]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand status" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand status" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand status" -l page-url -d 'Print the status page\'s URL, with its token, to open in a browser'
complete -c evergreen -n "__fish_evergreen_using_subcommand status" -l json -d 'Print the answer as JSON instead of a table or text'
complete -c evergreen -n "__fish_evergreen_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand logs" -s n -l lines -d 'Print the last N lines (from the rotated files too when the current one holds fewer)' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand logs" -l socket -d 'Control socket [default: `evergreen.controlSocket`, else <root>/run/control.sock]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand logs" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand logs" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand logs" -l since -d 'Only lines at or after this time: 2026-12-07T02:05:28Z, "2026-12-07 02:05:28" (UTC), 2026-12-07, or a time ago (90s, 15m, 2h, 3d)' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand logs" -l until -d 'Only lines at or before this time (the same forms as --since)' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand logs" -l level -d 'Only lines at this level or above: DEBUG, INFO, WARN, ERROR or FATAL' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand logs" -s f -l follow -d 'Keep printing lines as they are written, across rotations, until interrupted (Ctrl-C); the runtime may stop meanwhile'
complete -c evergreen -n "__fish_evergreen_using_subcommand logs" -l json -d 'Print each line as a JSON object (timestamp, level, arn, message)'
complete -c evergreen -n "__fish_evergreen_using_subcommand logs" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand deploy" -l socket -d 'Control socket [default: `evergreen.controlSocket`, else <root>/run/control.sock]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand deploy" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand deploy" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand deploy" -l json -d 'Print the answer as JSON instead of a table or text'
complete -c evergreen -n "__fish_evergreen_using_subcommand deploy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand redeploy" -l socket -d 'Control socket [default: `evergreen.controlSocket`, else <root>/run/control.sock]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand redeploy" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand redeploy" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand redeploy" -l json -d 'Print the answer as JSON instead of a table or text'
complete -c evergreen -n "__fish_evergreen_using_subcommand redeploy" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand reset" -l socket -d 'Control socket [default: `evergreen.controlSocket`, else <root>/run/control.sock]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand reset" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand reset" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand reset" -s y -l yes -d 'Do not ask: reset at once (for scripts)'
complete -c evergreen -n "__fish_evergreen_using_subcommand reset" -l json -d 'Print the answer as JSON instead of a table or text'
complete -c evergreen -n "__fish_evergreen_using_subcommand reset" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand restart" -l socket -d 'Control socket [default: `evergreen.controlSocket`, else <root>/run/control.sock]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand restart" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand restart" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand restart" -l json -d 'Print the answer as JSON instead of a table or text'
complete -c evergreen -n "__fish_evergreen_using_subcommand restart" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand stop" -l socket -d 'Control socket [default: `evergreen.controlSocket`, else <root>/run/control.sock]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand stop" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand stop" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand stop" -l json -d 'Print the answer as JSON instead of a table or text'
complete -c evergreen -n "__fish_evergreen_using_subcommand stop" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand start" -l socket -d 'Control socket [default: `evergreen.controlSocket`, else <root>/run/control.sock]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand start" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand start" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand start" -l json -d 'Print the answer as JSON instead of a table or text'
complete -c evergreen -n "__fish_evergreen_using_subcommand start" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand deployments" -l socket -d 'Control socket [default: `evergreen.controlSocket`, else <root>/run/control.sock]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand deployments" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand deployments" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand deployments" -l json -d 'Print the answer as JSON instead of a table or text'
complete -c evergreen -n "__fish_evergreen_using_subcommand deployments" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and not __fish_seen_subcommand_from init device help" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and not __fish_seen_subcommand_from init device help" -f -a "init" -d 'Create the group CA (kept if it exists, unless --force) and a server certificate (ECDSA P-256) for localhost and each --host'
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and not __fish_seen_subcommand_from init device help" -f -a "device" -d 'Issue a device key and certificate whose subject CN is THING (its thing name, which is also its MQTT client id)'
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and not __fish_seen_subcommand_from init device help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and __fish_seen_subcommand_from init" -l host -d 'Another DNS name or IP address devices use to reach this gateway' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and __fish_seen_subcommand_from init" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and __fish_seen_subcommand_from init" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and __fish_seen_subcommand_from init" -l force -d 'Replace an existing CA (every device certificate must be issued again)'
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and __fish_seen_subcommand_from init" -l rsa -d 'RSA 2048 keys instead of ECDSA P-256 (for devices without ECDSA)'
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and __fish_seen_subcommand_from init" -l json -d 'Print `{"ca", "certificate", "key", "createdCa"}` (the files\' paths)'
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and __fish_seen_subcommand_from init" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and __fish_seen_subcommand_from device" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and __fish_seen_subcommand_from device" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and __fish_seen_subcommand_from device" -l rsa -d 'An RSA 2048 key instead of ECDSA P-256'
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and __fish_seen_subcommand_from device" -l json -d 'Print `{"certificate", "key"}` (the files\' paths)'
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and __fish_seen_subcommand_from device" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and __fish_seen_subcommand_from help" -f -a "init" -d 'Create the group CA (kept if it exists, unless --force) and a server certificate (ECDSA P-256) for localhost and each --host'
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and __fish_seen_subcommand_from help" -f -a "device" -d 'Issue a device key and certificate whose subject CN is THING (its thing name, which is also its MQTT client id)'
complete -c evergreen -n "__fish_evergreen_using_subcommand certs; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and not __fish_seen_subcommand_from put list rm help" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and not __fish_seen_subcommand_from put list rm help" -f -a "put" -d 'Store (or replace) the value of secret NAME: a Secrets Manager secret name (`greengrass-TwilioAuthToken`, matching the resource ARN `…:secret:greengrass-TwilioAuthToken-AbCdEf`) or a full secret ARN'
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and not __fish_seen_subcommand_from put list rm help" -f -a "list" -d 'List the stored secrets: name, type, size, when stored (never values)'
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and not __fish_seen_subcommand_from put list rm help" -f -a "rm" -d 'Remove a stored secret. Exit status 0 when removed, 1 when it was not stored'
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and not __fish_seen_subcommand_from put list rm help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from put" -l from-file -d 'Read the value from FILE' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from put" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from put" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from put" -l stdin -d 'Read the value from standard input'
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from put" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from list" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from list" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from list" -l json -d 'Print `{"secrets": [{"name", "type", "size", "storedAt", …}], "problems": […]}`'
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from rm" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from rm" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from help" -f -a "put" -d 'Store (or replace) the value of secret NAME: a Secrets Manager secret name (`greengrass-TwilioAuthToken`, matching the resource ARN `…:secret:greengrass-TwilioAuthToken-AbCdEf`) or a full secret ARN'
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the stored secrets: name, type, size, when stored (never values)'
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from help" -f -a "rm" -d 'Remove a stored secret. Exit status 0 when removed, 1 when it was not stored'
complete -c evergreen -n "__fish_evergreen_using_subcommand secrets; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evergreen -n "__fish_evergreen_using_subcommand connectors" -l json -d 'Print `{"connectors": [{"name", "versions", "parameters": […], …}]}`'
complete -c evergreen -n "__fish_evergreen_using_subcommand connectors" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand check" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand check" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand check" -l group -d 'Group file to check [default: the last good deployment, else the embedded default group: what `evergreen run` would start]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand check" -l timeout-secs -d 'Bound on each network step (DNS, TCP connect, TLS handshake), in seconds' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand check" -l json -d 'Print `{"checks":[{"name","status","detail","hint"}],"worst":…}` instead of text'
complete -c evergreen -n "__fish_evergreen_using_subcommand check" -l container -d 'Only the container-mode report (kernel, namespaces, cgroups, privileges, probe)'
complete -c evergreen -n "__fish_evergreen_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand support-bundle" -l config -d 'Core configuration file [default: /etc/evergreen/config.json if present]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand support-bundle" -l root -d 'Runtime root; overrides `evergreen.root` in the configuration' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand support-bundle" -l socket -d 'Control socket [default: `evergreen.controlSocket`, else <root>/run/control.sock]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand support-bundle" -s o -l output -d 'The archive to write [default: ./evergreen-support-<hostname>-<UTC time>.tar.gz]' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand support-bundle" -s n -l lines -d 'Lines taken from the end of each log file' -r
complete -c evergreen -n "__fish_evergreen_using_subcommand support-bundle" -l json -d 'Print `{"archive", "bytes", "files", "notCollected"}` instead of the archive\'s path'
complete -c evergreen -n "__fish_evergreen_using_subcommand support-bundle" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand default-group" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c evergreen -n "__fish_evergreen_using_subcommand man" -l dir -d 'Write every page into DIR instead of printing evergreen(1)' -r -F
complete -c evergreen -n "__fish_evergreen_using_subcommand man" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand connector" -s h -l help -d 'Print help'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "run" -d 'Run a group until SIGINT or SIGTERM'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "validate" -d 'Check a group file and print every error with its JSON path'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "import" -d 'Make a group file from a Greengrass V1 group as you saved it: `aws greengrass get-group-version` and `get-*-definition-version` outputs (files, a directory of them, or one combined JSON), or CloudFormation templates with AWS::Greengrass resources (JSON or YAML, short-form tags included)'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "function" -d 'Greengrass V1 Python functions: package a function\'s directory'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "fleet" -d 'Fleet deployments: make a signing key, sign a deployment document for a bundle'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "group" -d 'Store validated groups as immutable versions, and inspect them'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "status" -d 'Show the running runtime and each component: state, pid, uptime, restarts, memory, messages in and out, queue and drops'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "logs" -d 'Print the last lines of a component\'s log, or the runtime\'s, and with -f follow it'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "deploy" -d 'Deploy a stored group version (id or unique prefix), a group file (stored as a version with its programs and code first), or a group bundle (`group export`; imported first, every digest checked), to the running runtime'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "redeploy" -d 'Deploy again the group version of an earlier deployment'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "reset" -d 'Stop every component of the running runtime (deploy the empty group)'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "restart" -d 'Start a component again now, by name, Id or ARN: a Failed one without waiting for its cool-down, a running one after a graceful stop'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "stop" -d 'Stop a component, by name, Id or ARN, and keep it stopped: no restart policy, message or cool-down starts it again until `evergreen start` or a new deployment (a restart of the runtime starts it too). `status` shows it `Stopped (operator)`'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "start" -d 'Start a component that `evergreen stop` stopped: a pinned one now, an on-demand one at its next message. A component that was not stopped by an operator is left as it is'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "deployments" -d 'The running runtime\'s deployment history, newest first'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "certs" -d 'Certificates for the local MQTT server without the cloud: a group CA, the server\'s certificate and device certificates, written owner-only (0600, directory 0700) under <root>/certs/local'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "secrets" -d 'Secret values for the group\'s secret resources, stored encrypted under <root>/secrets (see docs/services.md, "Secrets"). A value is used from the next deployment on'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "connectors" -d 'List the connectors built into this binary, with their parameters and topics'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "check" -d 'The health check to run first: configuration and group, certificates, listeners\' ports, the upstream endpoint (DNS, TCP, TLS with the core\'s certificate), clock, disk space and container support; one line per check, OK, WARN or FAIL with a fix'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "support-bundle" -d 'Write one archive for a bug report: versions, the configuration and the group (secrets and keys redacted), status, deployment history, the last lines of every log, `check`\'s report and kernel and cgroup facts, with a MANIFEST.txt of what is in it'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "default-group" -d 'Print the embedded default group, a starting point for your own'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "completions" -d 'Print the completion script for SHELL, generated from this binary\'s commands'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "man" -d 'Print the man page evergreen(1), or with --dir write it and one page per command (evergreen-status.1, …) into DIR: generated from the same definitions as --help'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "connector" -d 'Run a built-in connector over stdio (used by the supervisor)'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and not __fish_seen_subcommand_from run validate import function fleet group status logs deploy redeploy reset restart stop start deployments certs secrets connectors check support-bundle default-group completions man connector help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from function" -f -a "package" -d 'Zip a Python function\'s directory (its handler module and what it vendors, such as greengrasssdk) into the file a group\'s CodeUri names'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from fleet" -f -a "keygen" -d 'Make a signing key: writes it to KEY_FILE (owner-only; keep it secret) and prints the public key to put in each gateway\'s `evergreen.fleet.trustedKeys`'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from fleet" -f -a "sign" -d 'Write the signed deployment document for BUNDLE (`evergreen group export`) to standard output: its size and SHA-256, where gateways fetch it (--url) or the bundle itself (--inline, for small groups), who it is for, and the fleet\'s next sequence number'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from fleet" -f -a "deploy" -d 'Roll BUNDLE out over the broker: a canary stage, then batches, each signed for its gateways and published on their topics; waits for every gateway\'s status, and halts (leaving the rest untouched) once more than --max-failures have failed'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from fleet" -f -a "update" -d 'Roll a new Evergreen release out over the broker, with the same stages and halt rules as `deploy`: each gateway downloads the binary for its target, checks it, restarts onto it and reports `Success` once the new runtime is healthy, or `RolledBack` (its previous release running again) with the reason'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from fleet" -f -a "status" -d 'The fleet as the gateways\' retained messages show it: per gateway its groups, version, last deployment status and health; and the rollouts in progress. With --watch, every change as it comes. Exit status 0, 1 when the broker cannot be reached'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from fleet" -f -a "abort" -d 'Stop the rollout in progress of a fleet before its next stage (the gateways of the stage under way finish it). Exit status 0 when one was aborted, 1 when none is running'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "create-version" -d 'Validate a group file as `evergreen run` would and store it as an immutable version under <root>/deployments/versions'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "list" -d 'List the stored versions, newest first'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "export" -d 'Write a stored version and every program and code directory it runs as one bundle file (a tar): what `group import` or `deploy` on another gateway takes'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "import" -d 'Store the version in a bundle (`group export`), every digest checked and the group validated, as `create-version` stores a file'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "show" -d 'Print a stored version\'s group, its content checked against its id'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from certs" -f -a "init" -d 'Create the group CA (kept if it exists, unless --force) and a server certificate (ECDSA P-256) for localhost and each --host'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from certs" -f -a "device" -d 'Issue a device key and certificate whose subject CN is THING (its thing name, which is also its MQTT client id)'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from secrets" -f -a "put" -d 'Store (or replace) the value of secret NAME: a Secrets Manager secret name (`greengrass-TwilioAuthToken`, matching the resource ARN `…:secret:greengrass-TwilioAuthToken-AbCdEf`) or a full secret ARN'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from secrets" -f -a "list" -d 'List the stored secrets: name, type, size, when stored (never values)'
complete -c evergreen -n "__fish_evergreen_using_subcommand help; and __fish_seen_subcommand_from secrets" -f -a "rm" -d 'Remove a stored secret. Exit status 0 when removed, 1 when it was not stored'
