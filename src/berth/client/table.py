"""Every berth command's usage line, one-line description and flags: what
the parser accepts (berth.client.args), what `VERB --help` prints and what
docs/cli.md lists (scripts/cli_reference.py) come from here alone.

A flag line is `NAMES[=TYPE|=*TYPE]  description`: `d/detach` is a boolean,
`name=string` takes one value (the last wins), `e/env=*list` is repeatable.
The TYPE word is shown in --help and checked on the way in: int, uint,
decimal, bytes, duration, ip(v4|v6) and host:ip must parse, so `--cpus abc` is a usage error
(exit 125), not a traceback later."""

GLOBAL = """
config=string           Location of the client's config files (default ~/.docker)
c/context=string        Name of the context to use (only "default" exists)
D/debug                 Show the traceback of an unexpected error
H/host=*list            Daemon socket to connect to (default $BERTH_HOST, $DOCKER_HOST, your rootless daemon's socket or unix:///run/berth/berth.sock)
l/log-level=string      Set the logging level (accepted for docker compatibility)
tls                     Use TLS; implied by --tlsverify
tlscacert=string        Trust certs signed only by this CA (default ~/.docker/ca.pem)
tlscert=string          Path to the TLS certificate file (default ~/.docker/cert.pem)
tlskey=string           Path to the TLS key file (default ~/.docker/key.pem)
tlsverify               Use TLS and verify the daemon's certificate
v/version               Print version information and quit
"""

MANAGEMENT = {
    "container": "Manage containers",
    "image": "Manage images",
    "network": "Manage networks",
    "system": "Manage berth",
    "volume": "Manage volumes",
}

_CONTAINER_CONFIG = """
a/attach=*list              Attach to STDIN, STDOUT or STDERR
add-host=*host:ip           Add a host-to-IP mapping to /etc/hosts (host:ip)
annotation=*list            Add an annotation to the container's OCI config (key=value)
blkio-weight=uint           Block IO weight (10 to 1000, 0 to leave it unset)
cap-add=*list               Add Linux capabilities
cap-drop=*list              Drop Linux capabilities
cgroup-parent=string        Cgroup under which the container's cgroup goes
cgroupns=string             Cgroup namespace: host or private (default private)
cidfile=string              Write the container ID to this file
c/cpu-shares=int            CPU shares (relative weight)
cpu-period=int              CPU CFS period in microseconds
cpu-quota=int               CPU CFS quota in microseconds
cpus=decimal                Number of CPUs, e.g. 1.5
cpuset-cpus=string          CPUs the container may use (0-3, 0,1)
cpuset-mems=string          Memory nodes the container may use (0-3, 0,1)
detach-keys=string          Key sequence that detaches from the container (default ctrl-p,ctrl-q)
device=*list                Add a host device to the container (host[:container][:rwm])
device-cgroup-rule=*list    Add a rule to the container's device cgroup allow list
disable-content-trust       Skip image verification (accepted for docker compatibility)
dns=*ip                     Set custom DNS servers
dns-option=*list            Set DNS options
dns-search=*list            Set custom DNS search domains
domainname=string           Container NIS domain name
entrypoint=string           Overwrite the image's default ENTRYPOINT
e/env=*list                 Set environment variables (NAME=value, or NAME to pass yours)
env-file=*list              Read environment variables from a file
expose=*list                Expose a port or a range of ports
gpus=string                 GPU devices to add (not supported by berth)
group-add=*list             Add additional groups to join
health-cmd=string           Command to run to check health
health-interval=duration    Time between running the check (ms|s|m|h)
health-retries=int          Consecutive failures needed to report unhealthy
health-start-period=duration  Start period for the container to initialize before retries count (ms|s|m|h)
health-timeout=duration     Maximum time to allow one check to run (ms|s|m|h)
h/hostname=string           Container host name
init                        Run an init inside the container that forwards signals and reaps processes
i/interactive               Keep STDIN open even if not attached
ip=ipv4                     IPv4 address (e.g., 172.30.100.104)
ip6=ipv6                    IPv6 address (e.g., 2001:db8::33)
ipc=string                  IPC mode to use (private, shareable, host, container:NAME)
isolation=string            Container isolation technology (accepted, ignored on Linux)
kernel-memory=bytes         Kernel memory limit (deprecated by the kernel, ignored)
l/label=*list               Set metadata on a container (key=value)
label-file=*list            Read in a line delimited file of labels
link=*list                  Add a link to another container (legacy; user networks have DNS)
log-driver=string           Logging driver for the container (json-file, the only one berth has)
log-opt=*list               Log driver options (max-size=10m, max-file=3)
mac-address=string          Container MAC address (e.g., 92:d0:c6:0a:29:33)
m/memory=bytes              Memory limit (e.g., 512m, 1g)
memory-reservation=bytes    Memory soft limit
memory-swap=bytes           Memory plus swap limit: -1 for unlimited swap
memory-swappiness=int       Tune container memory swappiness (0 to 100, -1 for the default)
mount=*mount                Attach a filesystem mount (type=bind|volume|tmpfs,source=...,target=...)
name=string                 Assign a name to the container
network=*network            Connect a container to a network (bridge, none, host, NAME)
net=*network                Same as --network
network-alias=*list         Add a network-scoped alias for the container
no-healthcheck              Disable any container-specified HEALTHCHECK
oom-kill-disable            Disable the OOM killer
oom-score-adj=int           Tune the host's OOM preferences (-1000 to 1000)
pid=string                  PID namespace to use (host, container:NAME)
pids-limit=int              Tune the container's pids limit (-1 for unlimited)
platform=string             Set the platform if the image is multi-platform
privileged                  Give extended privileges to this container (all capabilities, no seccomp, all devices)
p/publish=*list             Publish a container's port(s) to the host ([ip:][hostPort:]containerPort[/proto])
P/publish-all               Publish all exposed ports to random ports
pull=string                 Pull the image before creating: always, missing or never (default missing)
q/quiet                     Suppress the pull output
read-only                   Mount the container's root filesystem as read only
restart=string              Restart policy: no, always, unless-stopped, on-failure[:max-retries] (default no)
rm                          Automatically remove the container when it exits
runtime=string              Runtime to use for this container (berth, runc, crun, ...)
security-opt=*list          Security options (no-new-privileges[:false], seccomp=FILE|unconfined, label=...)
shm-size=bytes              Size of /dev/shm (default 64m)
stop-signal=string          Signal to stop the container (default SIGTERM)
stop-timeout=int            Seconds to wait after the stop signal before killing the container
storage-opt=*list           Storage driver options for the container
sysctl=*map                 Namespaced kernel parameters (net.*, kernel.shm*, fs.mqueue.*)
tmpfs=*list                 Mount a tmpfs directory (path[:options])
t/tty                       Allocate a pseudo-TTY
ulimit=*ulimit              Ulimit options (name=soft[:hard])
u/user=string               Username or UID (format: <name|uid>[:<group|gid>])
userns=string               User namespace to use (host, or empty for the daemon's remapping)
uts=string                  UTS namespace to use (host)
v/volume=*list              Bind mount a volume (name:/path, /host/path:/path[:ro])
volume-driver=string        Optional volume driver for the container
volumes-from=*list          Mount volumes from the specified container(s)
w/workdir=string            Working directory inside the container
"""

_FORMAT = "format=string   Format output using a custom template: 'table', 'table TEMPLATE', 'json' or a Go template"
_FILTER = "f/filter=*filter  Filter output based on conditions provided (key=value)"
_PRUNE = f"""
{_FILTER.replace("f/filter", "filter")}
f/force            Do not prompt for confirmation
"""

# key -> (usage after "berth ", one-line description, flags)
COMMANDS = {
    # -- containers -----------------------------------------------------------------
    "run": ("run [OPTIONS] IMAGE [COMMAND] [ARG...]", "Create and run a new container from an image",
            _CONTAINER_CONFIG + """
d/detach                    Run the container in the background and print its ID
sig-proxy                   Proxy received signals to the process (default true)
"""),
    "create": ("create [OPTIONS] IMAGE [COMMAND] [ARG...]", "Create a new container", _CONTAINER_CONFIG),
    "start": ("start [OPTIONS] CONTAINER [CONTAINER...]", "Start one or more stopped containers", """
a/attach                Attach STDOUT/STDERR and forward signals
checkpoint=string       Restore from this checkpoint (not supported by berth)
checkpoint-dir=string   Use a custom checkpoint storage directory (not supported by berth)
detach-keys=string      Key sequence that detaches from the container (default ctrl-p,ctrl-q)
i/interactive           Attach the container's STDIN
"""),
    "attach": ("attach [OPTIONS] CONTAINER",
               "Attach local standard input, output, and error streams to a running container", """
detach-keys=string   Key sequence that detaches from the container (default ctrl-p,ctrl-q)
no-stdin             Do not attach STDIN
sig-proxy            Proxy all received signals to the process (default true)
"""),
    "stop": ("stop [OPTIONS] CONTAINER [CONTAINER...]", "Stop one or more running containers", """
s/signal=string   Signal to send to the container (default: the container's stop signal)
t/time=int        Seconds to wait before killing the container (default 10)
"""),
    "restart": ("restart [OPTIONS] CONTAINER [CONTAINER...]", "Restart one or more containers", """
s/signal=string   Signal to send to the container (default: the container's stop signal)
t/time=int        Seconds to wait before killing the container (default 10)
"""),
    "kill": ("kill [OPTIONS] CONTAINER [CONTAINER...]", "Kill one or more running containers", """
s/signal=string   Signal to send to the container (default KILL)
"""),
    "rm": ("rm [OPTIONS] CONTAINER [CONTAINER...]", "Remove one or more containers", """
f/force     Force the removal of a running container (uses SIGKILL)
l/link      Remove the specified link (legacy links are not kept by berth)
v/volumes   Remove anonymous volumes associated with the container
"""),
    "pause": ("pause CONTAINER [CONTAINER...]", "Pause all processes within one or more containers", ""),
    "unpause": ("unpause CONTAINER [CONTAINER...]",
                "Unpause all processes within one or more containers", ""),
    "wait": ("wait CONTAINER [CONTAINER...]",
             "Block until one or more containers stop, then print their exit codes", ""),
    "rename": ("rename CONTAINER NEW_NAME", "Rename a container", ""),
    "update": ("update [OPTIONS] CONTAINER [CONTAINER...]",
               "Update configuration of one or more containers", """
blkio-weight=uint          Block IO weight (10 to 1000, 0 to leave it unset)
c/cpu-shares=int           CPU shares (relative weight)
cpu-period=int             CPU CFS period in microseconds
cpu-quota=int              CPU CFS quota in microseconds
cpus=decimal               Number of CPUs
cpuset-cpus=string         CPUs the container may use (0-3, 0,1)
cpuset-mems=string         Memory nodes the container may use (0-3, 0,1)
m/memory=bytes             Memory limit
memory-reservation=bytes   Memory soft limit
memory-swap=bytes          Memory plus swap limit: -1 for unlimited swap
pids-limit=int             Tune the container's pids limit (-1 for unlimited)
restart=string             Restart policy to apply when a container exits
"""),
    "port": ("port CONTAINER [PRIVATE_PORT[/PROTO]]",
             "List port mappings or a specific mapping for the container", ""),
    "top": ("top CONTAINER [ps OPTIONS]", "Display the running processes of a container", ""),
    "diff": ("diff CONTAINER", "Inspect changes to files or directories on a container's filesystem", ""),
    "export": ("export [OPTIONS] CONTAINER", "Export a container's filesystem as a tar archive", """
o/output=string   Write to a file, instead of STDOUT
"""),
    "container prune": ("container prune [OPTIONS]", "Remove all stopped containers", _PRUNE),
    "container inspect": ("container inspect [OPTIONS] CONTAINER [CONTAINER...]",
                          "Display detailed information on one or more containers", """
f/format=string   Format output using a Go template, or 'json'
s/size            Display total file sizes
"""),
    "ps": ("ps [OPTIONS]", "List containers", f"""
a/all              Show all containers (default shows just running)
{_FILTER}
{_FORMAT}
n/last=int         Show n last created containers (includes all states)
l/latest           Show the latest created container (includes all states)
no-trunc           Don't truncate output
q/quiet            Only display container IDs
s/size             Display total file sizes
"""),
    "logs": ("logs [OPTIONS] CONTAINER", "Fetch the logs of a container", """
details            Show extra details provided to logs
f/follow           Follow log output
since=string       Show logs since a timestamp (2013-01-02T13:23:37Z) or relative (42m)
n/tail=string      Number of lines to show from the end of the logs (default all)
t/timestamps       Show timestamps
until=string       Show logs before a timestamp (2013-01-02T13:23:37Z) or relative (42m)
"""),
    "exec": ("exec [OPTIONS] CONTAINER COMMAND [ARG...]", "Execute a command in a running container", """
d/detach              Detached mode: run the command in the background
detach-keys=string    Key sequence that detaches from the command (default ctrl-p,ctrl-q)
e/env=*list           Set environment variables
env-file=*list        Read in a file of environment variables
i/interactive         Keep STDIN open even if not attached
privileged            Give extended privileges to the command
t/tty                 Allocate a pseudo-TTY
u/user=string         Username or UID (format: <name|uid>[:<group|gid>])
w/workdir=string      Working directory inside the container
"""),
    "stats": ("stats [OPTIONS] [CONTAINER...]", "Display a live stream of container(s) resource usage statistics", f"""
a/all              Show all containers (default shows just running)
{_FORMAT}
no-stream          Disable streaming stats and only pull the first result
no-trunc           Do not truncate output
"""),
    "cp": ("cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n        berth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
           "Copy files/folders between a container and the local filesystem", """
a/archive       Archive mode (copy all uid/gid information)
L/follow-link   Always follow symbol link in SRC_PATH
q/quiet         Suppress progress output
"""),
    # -- images ---------------------------------------------------------------------
    "images": ("images [OPTIONS] [REPOSITORY[:TAG]]", "List images", f"""
a/all              Show all images (default hides intermediate images)
digests            Show digests
{_FILTER}
{_FORMAT}
no-trunc           Don't truncate output
q/quiet            Only show image IDs
"""),
    "pull": ("pull [OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry", """
a/all-tags              Download all tagged images in the repository
disable-content-trust   Skip image verification (accepted for docker compatibility)
platform=string         Set platform if server is multi-platform capable
q/quiet                 Suppress verbose output
"""),
    "push": ("push [OPTIONS] NAME[:TAG]", "Upload an image to a registry", """
a/all-tags              Push all tags of an image to the repository
disable-content-trust   Skip image signing (accepted for docker compatibility)
q/quiet                 Suppress verbose output
"""),
    "load": ("load [OPTIONS]", "Load an image from a tar archive or STDIN", """
i/input=string    Read from tar archive file, instead of STDIN
platform=string   Load only the given platform (accepted, ignored)
q/quiet           Suppress the load output
"""),
    "save": ("save [OPTIONS] IMAGE [IMAGE...]", "Save one or more images to a tar archive (streamed to STDOUT by default)", """
o/output=string   Write to a file, instead of STDOUT
platform=string   Save only the given platform (accepted, ignored)
"""),
    "import": ("import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
               "Import the contents from a tarball to create a filesystem image", """
c/change=*list    Apply Dockerfile instruction to the created image
m/message=string  Set commit message for imported image
platform=string   Set platform if server is multi-platform capable
"""),
    "tag": ("tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
            "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", ""),
    "rmi": ("rmi [OPTIONS] IMAGE [IMAGE...]", "Remove one or more images", """
f/force      Force removal of the image
no-prune     Do not delete untagged parents
"""),
    "history": ("history [OPTIONS] IMAGE", "Show the history of an image", f"""
{_FORMAT}
H/human      Print sizes and dates in human readable format (default true)
no-trunc     Don't truncate output
q/quiet      Only show image IDs
"""),
    "image prune": ("image prune [OPTIONS]", "Remove unused images", """
a/all              Remove all unused images, not just dangling ones
""" + _PRUNE),
    "image inspect": ("image inspect [OPTIONS] IMAGE [IMAGE...]",
                      "Display detailed information on one or more images", """
f/format=string   Format output using a Go template, or 'json'
s/size            Accepted for docker compatibility
"""),
    "image sign": ("image sign --key COSIGN_KEY IMAGE  (or --key KEY --signer NAME IMAGE)",
                   "Sign an image: a cosign-compatible sigstore signature pushed beside it "
                   "(the key's password from $COSIGN_PASSWORD or a prompt), or with --signer "
                   "berth's own local signature", """
k/key=string      The private key: cosign's (made by image keygen), or a PEM key with --signer
signer=string     Make berth's own local signature, recording this signer's name
"""),
    "image verify": ("image verify --key COSIGN_PUB IMAGE  (or --keys PUB_FILE_OR_DIR IMAGE)",
                     "Verify an image's signatures: the registry's sigstore signatures under a "
                     "public key, or berth's local ones", """
k/key=string      A public key (PEM): the registry's sigstore signatures are checked with it
keys=string       berth's local signatures: a public key file, or a directory of them
"""),
    "image keygen": ("image keygen [--output-key-prefix PREFIX]",
                     "Make a cosign-compatible key pair (ECDSA P-256): PREFIX.key, encrypted "
                     "with a password, and PREFIX.pub", """
output-key-prefix=string  The key files' name without .key/.pub (default cosign)
"""),
    "image scan": ("image scan [OPTIONS] IMAGE [IMAGE...]",
                   "Scan an image's files and config without running it (setuid files, "
                   "world-writable paths, keys, root user, secrets in the environment)", """
fail-on=string     Exit 1 when a finding is at least this severe: high (default), medium, low, info, none
format=string      json, or a Go template applied to each finding
q/quiet            Only the summary line
s/severity=string  Show findings at least this severe (default info)
"""),
    # -- system -----------------------------------------------------------------------
    "version": ("version [OPTIONS]", "Show the berth version information", """
f/format=string   Format output using a Go template, or 'json'
"""),
    "info": ("info [OPTIONS]", "Display system-wide information", """
f/format=string   Format output using a Go template, or 'json'
"""),
    "inspect": ("inspect [OPTIONS] NAME|ID [NAME|ID...]", "Return low-level information on berth objects", """
f/format=string   Format output using a Go template, or 'json'
s/size            Display total file sizes if the type is container
type=string       Only this type of object: container, image, network or volume
"""),
    "events": ("events [OPTIONS]", "Get real time events from the server", f"""
{_FILTER}
{_FORMAT}
since=string      Show all events created since timestamp
until=string      Stream events until this timestamp
"""),
    "system df": ("system df [OPTIONS]", "Show berth disk usage", f"""
{_FORMAT}
v/verbose         Show detailed information on space usage
"""),
    "system prune": ("system prune [OPTIONS]", "Remove unused data", """
a/all             Remove all unused images not just dangling ones
volumes           Prune anonymous volumes
""" + _PRUNE),
    "login": ("login [OPTIONS] [SERVER]", "Log in to a registry", """
p/password=string   Password
password-stdin      Take the password from stdin
u/username=string   Username
"""),
    "logout": ("logout [SERVER]", "Log out from a registry", ""),
    "audit": ("audit [OPTIONS]",
              "Check the daemon, its images and containers (CIS Docker Benchmark v1.6.0)", """
a/all             Also check stopped containers
fail-on=string    Exit 1 on: fail (default) or warn
format=string     json, or a Go template applied to each check
level=*list       Only daemon, image or container checks (the score too)
no-images         Do not scan image layers (faster)
q/quiet           Only the non-passing checks and the score
"""),
    # -- volumes ----------------------------------------------------------------------
    "volume create": ("volume create [OPTIONS] [VOLUME]", "Create a volume", """
d/driver=string   Specify volume driver name (default local)
label=*list       Set metadata for a volume
name=string       Specify volume name
o/opt=*map        Set driver specific options (type=tmpfs, device=..., o=...)
"""),
    "volume ls": ("volume ls [OPTIONS]", "List volumes", f"""
{_FILTER}
{_FORMAT}
q/quiet           Only display volume names
"""),
    "volume inspect": ("volume inspect [OPTIONS] VOLUME [VOLUME...]",
                       "Display detailed information on one or more volumes", """
f/format=string   Format output using a Go template, or 'json'
"""),
    "volume rm": ("volume rm [OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes", """
f/force           Force the removal of one or more volumes
"""),
    "volume prune": ("volume prune [OPTIONS]", "Remove unused local volumes", """
a/all             Remove all unused volumes, not just anonymous ones
""" + _PRUNE),
    # -- networks ---------------------------------------------------------------------
    "network create": ("network create [OPTIONS] NETWORK", "Create a network", """
attachable           Enable manual container attachment
aux-address=*map     Auxiliary IPv4 or IPv6 addresses used by the network driver
config-from=string   The network from which to copy the configuration
config-only          Create a configuration only network
d/driver=string      Driver to manage the network: bridge (default), macvlan
gateway=*list        IPv4 or IPv6 gateway for the master subnet
ingress              Create swarm routing-mesh network (not supported: no swarm)
internal             Restrict external access to the network
ip-range=*list       Allocate container ip from a sub-range
ipam-driver=string   IP address management driver (default)
ipam-opt=*map        Set IPAM driver specific options
ipv6                 Enable IPv6 networking
label=*list          Set metadata on a network
o/opt=*map           Set driver specific options
scope=string         Control the network's scope
subnet=*list         Subnet in CIDR format that represents a network segment
"""),
    "network ls": ("network ls [OPTIONS]", "List networks", f"""
{_FILTER}
{_FORMAT}
no-trunc          Do not truncate the output
q/quiet           Only display network IDs
"""),
    "network inspect": ("network inspect [OPTIONS] NETWORK [NETWORK...]",
                        "Display detailed information on one or more networks", """
f/format=string   Format output using a Go template, or 'json'
"""),
    "network rm": ("network rm NETWORK [NETWORK...]", "Remove one or more networks", """
f/force           Do not error if the network does not exist
"""),
    "network connect": ("network connect [OPTIONS] NETWORK CONTAINER", "Connect a container to a network", """
alias=*list          Add network-scoped alias for the container
driver-opt=*list     driver options for the network
ip=ipv4              IPv4 address (e.g., 172.30.100.104)
ip6=ipv6             IPv6 address (e.g., 2001:db8::33)
link=*list           Add link to another container
link-local-ip=*list  Add a link-local address for the container
"""),
    "network disconnect": ("network disconnect [OPTIONS] NETWORK CONTAINER",
                           "Disconnect a container from a network", """
f/force           Force the container to disconnect from a network
"""),
    "network prune": ("network prune [OPTIONS]", "Remove all unused networks", _PRUNE),
}


def command(key):
    """(usage, description, flags) of a command; KeyError names a bug."""
    return COMMANDS[key]
