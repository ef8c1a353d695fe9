#!/bin/sh
# The escape battery: run INSIDE a container (alpine: busybox tools only).
# Each probe really tries its escape and prints one line
#     NAME BLOCKED|OPEN detail
# BLOCKED only when the attempt failed (the detail says how); OPEN when it
# worked. Probes are written not to change the host when they succeed: they
# open for writing without writing, write back the value they read, mount
# read-only, and undo what they did. Settings from the caller (optional):
#     BATTERY_HOST_PID   a pid on the host (the daemon's) to try to reach
#     BATTERY_SOCKETS    host paths of the engine's API sockets, space separated
#     BATTERY_WATCH      seconds to watch /proc for host executables (while the
#                        caller runs `docker exec` against this container)
# tests/api/test_escape_battery.py and bench/escapes.py run it.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
SELF=$$
SCRIPT=$(readlink -f "$0" 2>/dev/null)
TMPD=/tmp/escape-battery.$$
mkdir -p "$TMPD"
# this shell's fds, listed now by a child: later, a $(...) in progress would
# show its own pipe among them, and busybox runs some applets in-process with
# stdout saved to a spare fd, hence a separate sh that does the redirecting
sh -c "ls -l /proc/$SELF/fd/ > '$TMPD/fds.self' 2>/dev/null"

say() { # name status detail...
    name=$1 st=$2
    shift 2
    echo "$name $st $(echo "$*" | tr '\n' ' ' | sed 's/  */ /g; s/ $//')"
}

# one line of stderr/stdout, for details
err() { "$@" 2>&1 | tail -n 1; }

# capability bit N in CapEff of this shell
has_cap() {
    hex=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/$SELF/status)
    [ $(( (0x$hex >> $1) & 1 )) -eq 1 ]
}

# -- /proc/self/exe and the runtime's binary -----------------------------------
probe_proc_exe() {
    out=""
    open=""
    # the shell's own executable (CVE-2019-5736 reopens it for writing)
    if (: >> /proc/self/exe) 2>/dev/null; then open="$open /proc/self/exe"; fi
    out="self:$(err sh -c ': >> /proc/self/exe' | sed 's/.*: //')"
    # pid 1 and every process we can see: is any of them a host binary we can
    # open for writing? (an exe whose path does not resolve to the same file
    # inside the container is a host file)
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [ "$pid" = "$SELF" ] && continue
        t=$(readlink "$p/exe" 2>/dev/null) || continue
        if ! [ "$p/exe" -ef "$t" ] && [ -e "$p/exe" ] && \
                [ "$(readlink "$p/exe" 2>/dev/null)" = "$t" ] && ! [ "$p/exe" -ef "$t" ]; then
            case $t in *memfd:*) ;; *) out="$out host-exe:$pid=$t" ;; esac
        fi
        if (: >> "$p/exe") 2>/dev/null; then open="$open $p/exe"; fi
    done
    out="$out pid1:$(readlink /proc/1/exe 2>&1)"
    if [ -n "$open" ]; then
        say proc_exe OPEN "opened for writing:$open $out"
    elif echo "$out" | grep -q host-exe:; then
        say proc_exe OPEN "$out"
    else
        say proc_exe BLOCKED "$out"
    fi
}

# watch /proc for BATTERY_WATCH seconds: while the caller runs `docker exec`,
# the runtime enters the container. A host binary seen as some pid's exe is
# the CVE-2019-5736 window if it can be held open and reopened for writing
# (now, or once nothing executes it: ETXTBSY); a read-only mount of it
# (EROFS, runc's protection) or an anonymous sealed copy is not
exe_write_error() { # /proc/N/exe -> "" if reopened for writing, else the error
    exec 7< "$1" 2>/dev/null || { echo "cannot open: $(err cat "$1" | sed 's/.*: //')"; return; }
    if (: >> /proc/self/fd/7) 2>/dev/null; then e=""
    else e=$( (: >> /proc/self/fd/7) 2>&1 | sed 's/.*: //'); fi
    exec 7<&-
    echo "$e"
}

probe_exec_window() {
    n=${BATTERY_WATCH:-0}
    end=$(( $(date +%s) + n ))
    seen=""
    open=""
    passes=0
    pids=""
    while :; do
        passes=$((passes + 1))
        for p in /proc/[0-9]*; do
            pid=${p#/proc/}
            case " $pids " in *" $pid "*) ;; *) pids="$pids $pid" ;; esac
            t=$(readlink "$p/exe" 2>/dev/null) || continue
            [ "$p/exe" -ef "$t" ] && continue
            case $t in *memfd:*) continue ;; esac
            # the process may have exec'd or exited between the two looks:
            # count it only if it still runs the same binary, still not ours
            [ "$(readlink "$p/exe" 2>/dev/null)" = "$t" ] || continue
            [ -e "$p/exe" ] || continue
            [ "$p/exe" -ef "$t" ] && continue
            case " $seen " in *" $t("*) continue ;; esac
            c=$(cat "$p/comm" 2>/dev/null)
            l=$(stat -L -c 'dev %D ino %i, %s bytes' "$p/exe" 2>/dev/null)
            e=$(exe_write_error "$p/exe")
            seen="$seen $t($c, $l: reopen for writing: ${e:-worked})"
            case $e in
                ""|*"busy"*) open="$open $t" ;;
            esac
        done
        [ "$(date +%s)" -ge "$end" ] && break
    done
    cnt=$(echo $pids | wc -w)
    if [ -n "$open" ]; then
        say exec_window OPEN "host executables reopenable for writing (now or once idle):$seen ($passes passes)"
    elif [ -n "$seen" ]; then
        say exec_window BLOCKED "host executables seen but not writable:$seen ($passes passes)"
    else
        say exec_window BLOCKED "no host executable among $cnt pids seen in $passes passes over ${n}s"
    fi
}

# -- leaked file descriptors and directories -----------------------------------
fd_report() { # pid -> " fd=target ..." of its fds other than 0-2 (and the script)
    # listed by a child (ls): a $(...) here would show its own pipe as our fd
    [ "$1" = "$SELF" ] || ls -l /proc/$1/fd/ > "$TMPD/fds.$1" 2>/dev/null
    [ "$1" = "$SELF" ] && cp "$TMPD/fds.self" "$TMPD/fds.$1"
    awk -v script="$SCRIPT" '{ for (i = 2; i <= NF; i++) if ($i == "->") {
            fd = $(i - 1); t = $(i + 1)
            if (fd != "0" && fd != "1" && fd != "2" && t != script) printf " %s=%s", fd, t } }' \
        "$TMPD/fds.$1"
}

probe_leaked_fds() {
    a=$(fd_report 1)
    b=$(fd_report $SELF)
    # fds 0-2 on a host file or directory (one the container cannot name:
    # the same path inside is another inode); a host character device such
    # as /dev/null gives no way out and is only reported
    outside=""
    chars=""
    for p in 1 $SELF; do
        for n in 0 1 2; do
            f=/proc/$p/fd/$n
            t=$(readlink $f 2>/dev/null) || continue
            case $t in /*) ;; *) continue ;; esac
            [ "$f" -ef "$t" ] && continue
            if [ -d "$f" ] || [ -f "$f" ]; then outside="$outside $p:$n=$t"
            else chars="$chars $p:$n=$t(host node)"; fi
        done
    done
    if [ -n "$a$b$outside" ]; then
        say leaked_fds OPEN "pid1:[$a] self:[$b] outside:[$outside]"
    else
        say leaked_fds BLOCKED "pid 1 and this shell hold only fds 0-2, no host file or dir among them ($(ls /proc/1/fd | tr '\n' ' ')$chars)"
    fi
}

probe_cwd() {
    bad=""
    for p in 1 $SELF; do
        for k in cwd root; do
            t=$(readlink /proc/$p/$k 2>&1)
            [ "/proc/$p/$k" -ef "$t" ] || bad="$bad $p/$k=$t"
        done
    done
    [ /proc/1/root -ef / ] || bad="$bad pid1-root-differs"
    if [ -n "$bad" ]; then
        say cwd_outside OPEN "cwd/root not inside the rootfs:$bad"
    else
        say cwd_outside BLOCKED "cwd and root of pid 1 and self resolve inside ($(readlink /proc/1/cwd), $(readlink /proc/self/cwd))"
    fi
}

# -- cgroup v1 release_agent (CVE-2022-0492) -----------------------------------
probe_release_agent() {
    mp=$TMPD/cg
    mkdir -p "$mp"
    tried=""
    # a new named hierarchy first (ours alone), then rdma (usually unmounted
    # on the host), then the host's own hierarchies; the agent is written
    # back with the value it had, so a success changes nothing
    for o in none,name=berthesc$$ rdma memory pids devices; do
        if m=$(mount -t cgroup -o "$o" cgroup "$mp" 2>&1); then
            if [ -e "$mp/release_agent" ]; then
                cur=$(cat "$mp/release_agent" 2>/dev/null)
                w=$(printf '%s\n' "$cur" 2>&1 > "$mp/release_agent") && ok=1 || ok=0
            else
                ok=0 w="no release_agent at the mount's root (a cgroup namespace mounts its own subtree, not the hierarchy's root)"
            fi
            # notify_on_release of the mount's root, written back as it was
            # (no child cgroup: one being removed at umount time would keep a
            # new hierarchy alive on the host)
            nv=$(cat "$mp/notify_on_release" 2>/dev/null)
            n=$(sh -c "echo '${nv:-0}' > '$mp/notify_on_release'" 2>&1) && nok=1 || nok=0
            umount "$mp" 2>/dev/null
            if [ $ok = 1 ]; then
                say release_agent OPEN "mount -t cgroup -o $o worked and release_agent took a write ('$cur' written back); notify_on_release: $([ $nok = 1 ] && echo writable || echo "${n##*: }")"
            else
                say release_agent BLOCKED "mount -t cgroup -o $o worked but release_agent cannot be set: ${w##*: }"
            fi
            return
        fi
        tried="$tried [-o $o: ${m##*: }]"
    done
    # the hierarchies already in the container, if any are writable
    for f in /sys/fs/cgroup/*/release_agent; do
        [ -e "$f" ] || continue
        cur=$(cat "$f" 2>/dev/null)
        if (printf '%s\n' "$cur" > "$f") 2>/dev/null; then
            say release_agent OPEN "$f took a write"
            return
        fi
    done
    say release_agent BLOCKED "mount refused:$tried; no release_agent writable under /sys/fs/cgroup"
}

# -- open_by_handle_at (shocker) ------------------------------------------------
probe_open_by_handle() {
    # no tool in busybox makes the syscall; it needs CAP_DAC_READ_SEARCH (and
    # Docker's seccomp profile allows it only with that capability)
    if has_cap 2; then
        say open_by_handle_at OPEN "CAP_DAC_READ_SEARCH is in CapEff $(sed -n 's/^CapEff:[[:space:]]*//p' /proc/$SELF/status): seccomp lets open_by_handle_at through"
    else
        say open_by_handle_at BLOCKED "capability absent: CAP_DAC_READ_SEARCH not in CapEff $(sed -n 's/^CapEff:[[:space:]]*//p' /proc/$SELF/status) (syscall not exercised: no tool)"
    fi
}

# -- block devices -----------------------------------------------------------------
host_disk() { # major:minor name of the first non-loop, non-zram disk the kernel lists
    for d in /sys/class/block/*; do
        n=${d##*/}
        case $n in loop*|zram*|ram*|dm-*) continue ;; esac
        [ -r "$d/dev" ] && { echo "$(cat "$d/dev") $n"; return; }
    done
    for d in /sys/class/block/*; do
        [ -r "$d/dev" ] && { echo "$(cat "$d/dev") ${d##*/}"; return; }
    done
    echo "8:0 sda"
}

probe_mknod() {
    set -- $(host_disk)
    mm=$1 name=$2
    node=$TMPD/blk
    if m=$(mknod "$node" b ${mm%:*} ${mm#*:} 2>&1); then
        rm -f "$node"
        say mknod_block OPEN "mknod $node b ${mm%:*} ${mm#*:} ($name) worked (CAP_MKNOD)"
    else
        say mknod_block BLOCKED "mknod b ${mm%:*} ${mm#*:} ($name): ${m##*: }"
    fi
}

probe_open_block() {
    set -- $(host_disk)
    mm=$1 name=$2
    devs=$( (ls /dev/$name; find /dev -type b) 2>/dev/null | awk '!seen[$0]++' | tr '\n' ' ')
    node=$TMPD/blk2
    mknod "$node" b ${mm%:*} ${mm#*:} 2>/dev/null && devs="$devs$node"
    [ -n "$devs" ] || { say open_block BLOCKED "no block device in /dev, mknod refused: cannot name $name ($mm)"; return; }
    for d in $devs; do
        if head -c 512 "$d" > /dev/null 2>&1; then
            rm -f "$node"
            say open_block OPEN "read 512 bytes of $d (host $name $mm among: $devs)"
            return
        fi
    done
    e=$(err head -c 1 ${devs%% *})
    rm -f "$node"
    say open_block BLOCKED "block devices present but unreadable ($devs): ${e##*: }"
}

probe_mount_disk() {
    set -- $(host_disk)
    name=$2
    mp=$TMPD/disk
    mkdir -p "$mp"
    devs=$(find /dev -type b 2>/dev/null | grep -v -e loop -e zram -e ram | tr '\n' ' ')
    node=$TMPD/blk3
    [ -e "/dev/$name" ] || { mknod "$node" b ${1%:*} ${1#*:} 2>/dev/null && devs="$devs$node"; }
    last="no block device for $name in /dev and mknod refused"
    for d in $devs; do
        if m=$(mount -o ro "$d" "$mp" 2>&1); then
            ls=$(ls "$mp" | head -5 | tr '\n' ' ')
            umount "$mp" 2>/dev/null
            rm -f "$node"
            say mount_host_disk OPEN "mounted $d read-only: $ls"
            return
        fi
        last="mount -o ro $d: ${m##*: }"
    done
    # no device node at all: the mount itself must still be refused
    m=$(mount -t tmpfs none "$mp" 2>&1) && { umount "$mp"; last="$last (but mount(2) works: tmpfs mounted)"; } || last="$last; mount tmpfs: ${m##*: }"
    rm -f "$node"
    case $last in *"mount(2) works"*) say mount_host_disk OPEN "$last" ;;
                  *) say mount_host_disk BLOCKED "$last" ;; esac
}

# -- /proc and /sys ---------------------------------------------------------------
probe_sysrq() {
    if [ ! -e /proc/sysrq-trigger ]; then
        say sysrq_trigger BLOCKED "/proc/sysrq-trigger absent (this kernel has none): $(err sh -c 'echo h > /proc/sysrq-trigger')"
        return
    fi
    # 'h' only prints the help to the kernel log
    if m=$(sh -c 'echo h > /proc/sysrq-trigger' 2>&1); then
        say sysrq_trigger OPEN "wrote 'h' to /proc/sysrq-trigger"
    else
        say sysrq_trigger BLOCKED "echo h > /proc/sysrq-trigger: ${m##*: }"
    fi
}

probe_kcore() {
    if m=$(head -c 1 /proc/kcore 2>/dev/null | wc -c); [ "$m" -gt 0 ] 2>/dev/null; then
        say kcore OPEN "read a byte of /proc/kcore"
    elif [ -e /proc/kcore ]; then
        say kcore BLOCKED "/proc/kcore exists but reads nothing: $(err head -c 1 /proc/kcore) (masked)"
    else
        say kcore BLOCKED "/proc/kcore absent (this kernel has none): $(err head -c 1 /proc/kcore | sed 's/.*: //')"
    fi
}

probe_dmesg() {
    if m=$(dmesg 2>&1 | head -c 200) && ! echo "$m" | grep -q 'klogctl'; then
        say kernel_log OPEN "dmesg reads the host's kernel log"
    else
        say kernel_log BLOCKED "dmesg: ${m##*: }"
    fi
}

probe_sys_write() {
    res=""
    open=""
    # opening for writing is the escape (uevent_helper runs as root on the
    # host); nothing is written
    for f in /sys/kernel/uevent_helper /sys/kernel/mm/transparent_hugepage/enabled /sys/class/net/lo/mtu; do
        [ -e "$f" ] || continue
        if (: >> "$f") 2>/dev/null; then open="$open $f"; else
            res="$res $(basename "$f"):$(err sh -c ": >> $f" | sed 's/.*: //')"
        fi
    done
    if m=$(mount -o remount,rw /sys 2>&1); then
        mount -o remount,ro /sys 2>/dev/null
        open="$open remount,rw:/sys"
    else
        res="$res remount-rw:${m##*: }"
    fi
    if [ -n "$open" ]; then
        say sys_write OPEN "writable:$open;$res"
    else
        say sys_write BLOCKED "$res"
    fi
}

probe_proc_sys() {
    f=/proc/sys/kernel/printk_ratelimit_burst
    v=$(cat $f 2>/dev/null)
    # writes back the value it read
    if m=$(sh -c "echo '$v' > $f" 2>&1); then
        say proc_sys_write OPEN "wrote $f (same value $v back)"
    else
        say proc_sys_write BLOCKED "echo $v > $f: ${m##*: }"
    fi
}

# -- processes ---------------------------------------------------------------------
probe_host_procs() {
    pids=$(ls -d /proc/[0-9]* | sed 's,/proc/,,' | tr '\n' ' ')
    n=$(echo $pids | wc -w)
    foreign=""
    for p in $pids; do
        [ -e /proc/$p/root ] || continue
        # a host process has the host's / as its root
        if [ -r /proc/$p/root ] && ! [ /proc/$p/root -ef / ]; then
            foreign="$foreign $p($(cat /proc/$p/comm 2>/dev/null))"
        fi
    done
    init=$(tr '\0' ' ' < /proc/1/cmdline)
    hp=${BATTERY_HOST_PID:-}
    if [ -n "$hp" ] && [ -d /proc/$hp ] && [ "$(cat /proc/$hp/comm 2>/dev/null)" != sleep ] && \
            ! [ /proc/$hp/root -ef / ]; then
        foreign="$foreign host-pid-$hp-visible"
    fi
    if [ -n "$foreign" ]; then
        say host_processes OPEN "$n pids visible, host ones:$foreign"
    else
        say host_processes BLOCKED "$n pids visible ($pids) all inside; pid 1 is '$init'"
    fi
}

probe_ptrace_host() {
    hp=${BATTERY_HOST_PID:-}
    if [ -z "$hp" ]; then
        say ptrace_host BLOCKED "no BATTERY_HOST_PID given; CAP_SYS_PTRACE $(has_cap 19 && echo present || echo absent)"
        return
    fi
    if m=$(kill -0 "$hp" 2>&1); then
        # visible: try to enter it (setns needs ptrace access to it)
        if e=$(nsenter -t "$hp" -m true 2>&1); then
            say ptrace_host OPEN "kill -0 $hp works and nsenter -t $hp -m entered the host's mount ns"
        else
            say ptrace_host OPEN "kill -0 $hp works (host pid signalable); nsenter: ${e##*: }"
        fi
    else
        say ptrace_host BLOCKED "kill -0 $hp (host daemon pid): ${m##*: }"
    fi
}

# -- keys, namespaces, modules ---------------------------------------------------------
probe_keyctl() {
    k=$(cat /proc/keys 2>&1)
    # busybox has no keyctl/add_key tool: what the kernel's key table shows us
    if [ -n "$k" ] && ! echo "$k" | grep -q -i -e 'no such' -e 'denied'; then
        say keyctl OPEN "/proc/keys lists $(echo "$k" | wc -l) keys: $(echo "$k" | head -2 | cut -c1-80)"
    else
        say keyctl BLOCKED "/proc/keys shows nothing ($(mount | grep -c ' /proc/keys ') mount(s) over it: masked) ${k:+($k)} (add_key not exercised: no tool)"
    fi
}

probe_userns() {
    if m=$(unshare -U -r id 2>&1); then
        say nested_userns OPEN "unshare -U -r id: $m"
    else
        say nested_userns BLOCKED "unshare -U -r: ${m##*: }"
    fi
}

probe_module() {
    # an invalid module: EPERM means the load was refused before the kernel
    # looked at it; "invalid module format"/ENOEXEC means it would load a real one
    cp /bin/busybox "$TMPD/x.ko" 2>/dev/null
    m=$(insmod "$TMPD/x.ko" 2>&1)
    rm -f "$TMPD/x.ko"
    mods=$([ -d /lib/modules ] && echo "/lib/modules present" || echo "/lib/modules absent")
    case $m in
        *"not permitted"*|*"Permission denied"*|*"Function not implemented"*)
            say module_load BLOCKED "insmod: ${m##*: }; $mods" ;;
        *) say module_load OPEN "insmod reached the module loader: ${m##*: }; $mods" ;;
    esac
}

# -- network ---------------------------------------------------------------------------
probe_raw_socket() {
    m=$(traceroute -n -m 1 -q 1 -w 1 127.0.0.1 2>&1)
    case $m in
        *"socket("*"not permitted"*) say raw_socket BLOCKED "SOCK_RAW: ${m##*: }" ;;
        *) say raw_socket OPEN "traceroute opened a raw ICMP socket: $(echo "$m" | tail -n 1)" ;;
    esac
}

probe_arp() {
    # the container's interface when it has one (ARP to its gateway), else lo
    ifc=lo dst=127.0.0.1
    if [ -e /sys/class/net/eth0 ]; then
        ifc=eth0
        dst=$(ip route 2>/dev/null | awk '/^default/ { print $3; exit }')
        dst=${dst:-127.0.0.1}
    fi
    m=$(arping -c 1 -w 1 -I $ifc $dst 2>&1)
    case $m in
        *"socket(AF_PACKET"*"not permitted"*) say arp_spoof BLOCKED "AF_PACKET: ${m##*: }" ;;
        *) say arp_spoof OPEN "arping opened an AF_PACKET socket (could forge ARP): $(echo "$m" | tail -n 1)" ;;
    esac
}

# -- resources -----------------------------------------------------------------------------
probe_pids_limit() {
    v=""
    for f in /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/unified/pids.max; do
        [ -r "$f" ] && { v=$(cat "$f"); break; }
    done
    if [ -n "$v" ] && [ "$v" != max ]; then
        say pids_limit BLOCKED "fork bomb bounded: $f = $v"
    else
        say pids_limit OPEN "no pids limit (${f}: ${v:-unreadable})"
    fi
}

# -- clock, hostname ---------------------------------------------------------------------
probe_clock() {
    # set the tick to the value it has: needs CAP_SYS_TIME, changes nothing
    tick=$(adjtimex 2>/dev/null | sed -n 's/.*tick: *\([0-9]*\).*/\1/p')
    if m=$(adjtimex -q -t "${tick:-10000}" 2>&1); then
        say clock_set OPEN "adjtimex -t $tick (CAP_SYS_TIME) worked"
    else
        say clock_set BLOCKED "adjtimex -t $tick: ${m##*: }"
    fi
}

probe_hostname() {
    h=$(hostname)
    if m=$(hostname "$h" 2>&1); then
        say hostname_set OPEN "sethostname worked (own UTS namespace: harmless to the host)"
    else
        say hostname_set BLOCKED "sethostname: ${m##*: }"
    fi
}

# -- the daemon socket ---------------------------------------------------------------------
probe_daemon_socket() {
    found=""
    for s in ${BATTERY_SOCKETS:-} /run/berth/berth.sock /var/run/docker.sock /run/docker.sock \
             /run/containerd/containerd.sock; do
        [ -e "$s" ] && found="$found $s"
    done
    socks=$(find / -xdev -type s 2>/dev/null | head -20 | tr '\n' ' ')
    for d in /run /var/run /tmp; do
        socks="$socks $(find "$d" -type s 2>/dev/null | tr '\n' ' ')"
    done
    socks=$(echo $socks)
    if [ -n "$found$socks" ]; then
        # busybox nc cannot speak AF_UNIX: a socket node we can name is enough
        say daemon_socket OPEN "unix sockets reachable:$found $socks"
    else
        say daemon_socket BLOCKED "no unix socket under / (looked for:${BATTERY_SOCKETS:+ $BATTERY_SOCKETS} /run/berth/berth.sock /var/run/docker.sock; find / -type s: none)"
    fi
}

probe_proc_exe
probe_exec_window
probe_leaked_fds
probe_cwd
probe_release_agent
probe_open_by_handle
probe_mknod
probe_open_block
probe_mount_disk
probe_sysrq
probe_kcore
probe_dmesg
probe_sys_write
probe_proc_sys
probe_host_procs
probe_ptrace_host
probe_keyctl
probe_userns
probe_module
probe_raw_socket
probe_arp
probe_pids_limit
probe_clock
probe_hostname
probe_daemon_socket
rm -rf "$TMPD"
echo "done"
