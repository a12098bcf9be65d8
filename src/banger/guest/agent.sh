#!/.banger/bin/sh
# banger's guest agent: /.banger/agent in every image banger pulls. It runs
# with banger's own static busybox, so it works whatever the image contains.
#
# The initramfs (init.sh) has already set the address, hostname and resolver,
# installed the seeded SSH keys and switched root to here. This script first
# starts banger-agent (the host channel: commands, files, readiness), then an
# SSH server that carries its own libraries and loader (dropbear), then
# either stays as PID 1 (mode "init": the image has no init system) or hands
# PID 1 to the image's init (mode "sidecar": the image has an init but no SSH
# server; mode "channel": the image's init starts its own SSH server, so only
# banger-agent is added). The host side is banger/guest/agent.py; keep the
# two in step.

AGENT=/.banger
BB=$AGENT/bin/busybox
STATE=/run/banger/agent
HOST_KEY=/etc/ssh/ssh_host_ed25519_key
# Keep in step with banger/guest/proto.py (AGENT_VSOCK_PORT).
AGENT_VSOCK_PORT=1024

# Written at injection; these are the defaults for a hand-made tree.
BANGER_AGENT_MODE=init
BANGER_IMAGE_INIT=/sbin/init
# shellcheck source=/dev/null
[ -r "$AGENT/agent.conf" ] && . "$AGENT/agent.conf"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

bb() {
	"$BB" "$@"
}

# `/.banger/agent poweroff` (from the host over SSH): ask whichever init runs
# to power off, in its own language. systemd takes SIGRTMIN+4 (38 with glibc)
# even before its control socket exists; SIGUSR2 would only dump its state.
if [ "$1" = poweroff ]; then
	case "$(bb cat /proc/1/comm)" in
	agent) exec "$BB" kill -USR2 1 ;;
	systemd) systemctl poweroff 2>/dev/null || exec "$BB" kill -38 1 ;;
	*) poweroff 2>/dev/null || exec "$BB" poweroff ;;
	esac
	exit
fi
case "$1" in
init | sidecar | channel) BANGER_AGENT_MODE=$1 ;;
esac

say() {
	echo "banger-agent: $*"
}

# Read once (and again after /proc appears): each exec costs under emulation.
MOUNTS=
mounted() {
	case "$MOUNTS" in
	*" $1 "*) return 0 ;;
	esac
	return 1
}

# mount_fs TYPE DIR MODE [OPTIONS]: mount a pseudo filesystem unless present.
mount_fs() {
	mounted "$2" && return 0
	bb mkdir -p "$2" && bb chmod "$3" "$2"
	bb mount -t "$1" ${4:+-o "$4"} "$1" "$2" || say "warning: cannot mount $1 on $2"
}

setup_filesystems() {
	MOUNTS=$(bb cat /proc/mounts 2>/dev/null)
	mount_fs proc /proc 0555
	MOUNTS=$(bb cat /proc/mounts)
	mount_fs sysfs /sys 0555
	mount_fs devtmpfs /dev 0755
	mount_fs devpts /dev/pts 0755 gid=5,mode=620,ptmxmode=666
	mount_fs tmpfs /dev/shm 1777 mode=1777,nosuid,nodev
	mount_fs tmpfs /run 0755 mode=0755,nosuid,nodev
	[ -d /tmp ] || { bb mkdir -p /tmp && bb chmod 1777 /tmp; }
	bb mkdir -p "$STATE" && bb chmod 0700 "$STATE"
}

# The network and hostname were set in the initramfs and survive switch_root;
# only make sure the links are still up.
check_network() {
	bb ip link set lo up 2>/dev/null
	[ -e /sys/class/net/eth0 ] && bb ip link set eth0 up 2>/dev/null
	if [ -r /etc/hostname ] && [ "$(bb hostname)" = "(none)" ]; then
		bb hostname -F /etc/hostname
	fi
}

# dropbear finds root in /etc/passwd and accepts only shells /etc/shells lists.
# Edits land on the VM's overlay, never on the shared image.
ensure_root_login() {
	shell=/bin/sh
	[ -x /bin/sh ] || shell=$AGENT/bin/sh
	bb mkdir -p /etc
	if ! bb grep -q '^root:' /etc/passwd 2>/dev/null; then
		echo "root:x:0:0:root:/root:$shell" >>/etc/passwd
	else
		current=$(bb grep '^root:' /etc/passwd | bb head -n 1 | bb cut -d: -f7)
		if [ -n "$current" ] && [ ! -x "$current" ]; then
			say "root's shell $current is missing; using $shell"
			bb sed -i "s|^\(root:[^:]*:[^:]*:[^:]*:[^:]*:[^:]*:\).*|\1$shell|" /etc/passwd
		else
			shell=${current:-/bin/sh}
		fi
	fi
	if [ -f /etc/shells ]; then
		bb grep -qx "$shell" /etc/shells || echo "$shell" >>/etc/shells
	elif [ "$shell" != /bin/sh ]; then
		# Without the file, libc's list holds only /bin/sh and /bin/csh.
		printf '/bin/sh\n%s\n' "$shell" >/etc/shells
	fi
	# The initramfs installs the user's key in /root; dropbear looks in root's
	# home as /etc/passwd gives it.
	home=$(bb grep '^root:' /etc/passwd | bb head -n 1 | bb cut -d: -f6)
	if [ -n "$home" ] && [ "$home" != /root ] && [ -f /root/.ssh/authorized_keys ]; then
		bb mkdir -p "$home/.ssh" && bb chmod 0700 "$home/.ssh" &&
			bb cp /root/.ssh/authorized_keys "$home/.ssh/authorized_keys" &&
			bb chmod 0600 "$home/.ssh/authorized_keys" ||
			say "warning: cannot install root's key in $home"
	fi
}

# dropbear runs sftp-server from this fixed path (scp uses SFTP too); images
# without one get banger's, on the VM's overlay only.
ensure_sftp_server() {
	[ -e /usr/lib/sftp-server ] || [ -L /usr/lib/sftp-server ] && return 0
	bb mkdir -p /usr/lib && bb ln -s "$AGENT/bin/sftp-server" /usr/lib/sftp-server ||
		say "warning: cannot provide /usr/lib/sftp-server"
}

# The seed's OpenSSH key, in dropbear's format: the same key, so the host's
# pinned known_hosts entry still matches.
convert_host_key() {
	if [ ! -s "$HOST_KEY" ]; then
		say "error: no host key at $HOST_KEY (the VM's seed is missing)"
		return 1
	fi
	bb rm -f "$STATE/host_key"
	LD_LIBRARY_PATH=$AGENT/lib "$AGENT/bin/dropbearconvert" openssh dropbear \
		"$HOST_KEY" "$STATE/host_key" >/dev/null 2>&1 && return 0
	say "error: cannot convert $HOST_KEY for dropbear"
	return 1
}

# dropbear's loader is /.banger/lib/ld.so (patched in at bundle time) and its
# libraries come from LD_LIBRARY_PATH; dropbear clears the environment for
# sessions, so the image's programs never see banger's libc.
start_sshd() {
	LD_LIBRARY_PATH=$AGENT/lib "$AGENT/bin/dropbear" -F -E -s -p 22 \
		-r "$STATE/host_key" -P "$STATE/dropbear.pid" &
	sshd_pid=$!
}

# True once something listens on TCP port 22 (hex 0016, state 0A).
listening() {
	bb cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | bb grep -q '^ *[0-9]*: [0-9A-F]*:0016 [0-9A-F]*:0000 0A'
}

wait_listening() {
	tries=0
	while [ "$tries" -lt 100 ]; do
		listening && return 0
		tries=$((tries + 1))
		bb sleep 0.05
	done
	return 1
}

# The host channel, in the background: it owns the virtio-serial port named
# banger.agent (QEMU) and a vsock port (Firecracker), whichever exist, and
# prints "banger-agent: channel up" once it serves one. It outlives this
# script when the image's init takes PID 1.
start_channel() {
	if [ ! -x "$AGENT/bin/banger-agent" ]; then
		say "warning: no $AGENT/bin/banger-agent; the host must use SSH"
		return 0
	fi
	"$AGENT/bin/banger-agent" --serial auto --vsock "$AGENT_VSOCK_PORT" &
}

# Runtime masks (in /run, never on the image) for what stalls a systemd image
# from a registry in a VM: without udev, serial-getty waits 90 s for a
# ttyS0 device unit nobody announces; firstboot waits for answers on the console.
prepare_systemd() {
	case "$(bb readlink -f "$BANGER_IMAGE_INIT")" in
	*/systemd) ;;
	*) return 0 ;;
	esac
	bb mkdir -p /run/systemd/system
	bb ln -sf /dev/null /run/systemd/system/systemd-firstboot.service
	if [ ! -e /lib/systemd/systemd-udevd ] && [ ! -e /usr/lib/systemd/systemd-udevd ]; then
		bb ln -sf /dev/null /run/systemd/system/serial-getty@ttyS0.service
	fi
}

power_off() {
	trap '' TERM INT USR1 USR2 PWR
	say "powering off"
	bb kill -TERM -1 2>/dev/null
	bb sleep 0.3
	bb sync
	bb poweroff -f
	exit 0
}

# PID 1: the kernel delivers only signals that have a handler. busybox's
# halt/poweroff/reboot send USR1/USR2/TERM to PID 1; all of them end the VM
# (banger starts QEMU with -no-reboot).
serve_as_init() {
	trap power_off TERM INT USR1 USR2 PWR
	cd / || true
	while :; do
		# ash's wait reaps every child, so orphans never pile up as zombies.
		if [ -z "$sshd_pid" ]; then
			bb sleep 2147483647 &
			wait $!
			continue
		fi
		wait "$sshd_pid"
		say "dropbear exited; restarting it"
		bb sleep 1
		start_sshd
	done
}

setup_filesystems
start_channel
check_network
if [ "$BANGER_AGENT_MODE" = channel ]; then
	prepare_systemd
	say "handing over to $BANGER_IMAGE_INIT"
	exec "$BANGER_IMAGE_INIT"
fi
ensure_root_login
ensure_sftp_server
sshd_ok=
if convert_host_key; then
	start_sshd
	if wait_listening; then
		sshd_ok=1
		say "ready"
	else
		say "error: dropbear is not listening on port 22"
	fi
fi

if [ "$BANGER_AGENT_MODE" = sidecar ]; then
	prepare_systemd
	say "handing over to $BANGER_IMAGE_INIT"
	exec "$BANGER_IMAGE_INIT"
fi
if [ "$$" != 1 ]; then
	# Run by hand (not as init): leave dropbear running and return.
	[ -n "$sshd_ok" ]
	exit
fi
serve_as_init
