#!/bin/sh
# banger's initramfs /init (busybox sh). It loads the virtio drivers, assembles
# the root from the shared read-only image disk and the VM's overlay disk,
# configures the network from banger.* kernel arguments, installs the seeded
# SSH keys and hands over to the image's init. The host side of this contract
# is banger/guest/boot.py; keep the two in step.
#
# Any failure prints "banger-init: <what>" and powers off: with QEMU's
# -no-reboot the VMM exits, so the host sees a dead VM instead of a hang.

export PATH=/bin

ROOT_SERIAL=bgroot
OVERLAY_SERIAL=bgoverlay
SEED_DIR=seed
NEWROOT=/newroot
# Where the two disks stay visible after switch_root (a tmpfs on /run, which
# systemd keeps because it is already a mount point).
STATE=/run/banger

say() {
	echo "banger-init: $*"
}

fail() {
	say "$*"
	poweroff -f
	# poweroff -f does not return; should it, the kernel panics (panic=-1) instead.
	sleep 5
	exit 1
}

mount -t devtmpfs devtmpfs /dev || fail "cannot mount devtmpfs on /dev"
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc || fail "cannot mount /proc"
mount -t sysfs sysfs /sys || fail "cannot mount /sys"

ip_addr= gateway= dns= guest_name= guest_init=/sbin/init work_serial= disk_order= mounts=
for word in $(cat /proc/cmdline); do
	case "$word" in
	banger.disks=*) disk_order=${word#*=} ;;
	banger.ip=*) ip_addr=${word#*=} ;;
	banger.gw=*) gateway=${word#*=} ;;
	banger.dns=*) dns=${word#*=} ;;
	banger.hostname=*) guest_name=${word#*=} ;;
	banger.init=*) guest_init=${word#*=} ;;
	banger.work=*) work_serial=${word#*=} ;;
	banger.mount=*) mounts="$mounts ${word#*=}" ;;
	esac
done

while read -r module; do
	[ -n "$module" ] || continue
	insmod "/lib/modules/$module" || say "warning: could not load $module"
done </lib/modules/load-order

# The disk contract, the same under every VMM: QEMU reports the serial banger
# gave each disk; Firecracker reports one made of the backing file's device
# and inode numbers (its virtio-block GET_ID), not the drive id. So a disk is
# found by its serial, and failing that by its place in banger.disks (the
# names in attach order): Firecracker's Nth drive is the guest's Nth virtio
# disk, vda, vdb, ... in the order its MMIO devices are listed.
disk_by_order() {
	rest="$disk_order,"
	for letter in a b c d e f g h i j k l m n o p; do
		[ -n "$rest" ] || return 1
		name=${rest%%,*}
		rest=${rest#*,}
		if [ "$name" = "$1" ]; then
			[ -b "/dev/vd$letter" ] || return 1
			echo "/dev/vd$letter"
			return 0
		fi
	done
	return 1
}

# The disk (/dev/vdX) named $1, waiting up to 10 s for it.
find_disk() {
	tries=0
	while [ "$tries" -lt 100 ]; do
		any_serial=
		for serial in /sys/block/vd*/serial; do
			[ -r "$serial" ] || continue
			value=$(cat "$serial")
			case "$value" in bg*) any_serial=yes ;; esac
			if [ "$value" = "$1" ]; then
				dev=${serial%/serial}
				echo "/dev/${dev##*/}"
				return 0
			fi
		done
		# No disk carries a name of banger's: go by the order instead.
		if [ -z "$any_serial" ] && [ "$tries" -ge 10 ] && disk_by_order "$1"; then
			return 0
		fi
		tries=$((tries + 1))
		sleep 0.1
	done
	return 1
}

root_dev=$(find_disk "$ROOT_SERIAL") || fail "no disk with serial $ROOT_SERIAL (the image) after 10s"
overlay_dev=$(find_disk "$OVERLAY_SERIAL") ||
	fail "no disk with serial $OVERLAY_SERIAL (the VM's overlay) after 10s"

# noload: the image is shared by many VMs and must never see a journal replay.
mount -t ext4 -o ro,noload "$root_dev" /lower || fail "cannot mount the image disk $root_dev read-only"
mount -t ext4 "$overlay_dev" /overlay || fail "cannot mount the overlay disk $overlay_dev"
mkdir -p /overlay/upper /overlay/work || fail "cannot create upper/ and work/ on the overlay disk"
mount -t overlay overlay -o lowerdir=/lower,upperdir=/overlay/upper,workdir=/overlay/work "$NEWROOT" ||
	fail "cannot mount the overlay filesystem"

mkdir -p "$NEWROOT/run" || fail "cannot create /run in the new root"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$NEWROOT/run" || fail "cannot mount /run"
mkdir -p "$NEWROOT$STATE/lower" "$NEWROOT$STATE/overlay"
mount --move /lower "$NEWROOT$STATE/lower" || fail "cannot move the image mount"
mount --move /overlay "$NEWROOT$STATE/overlay" || fail "cannot move the overlay mount"

# The work disk is the guest's /root: the user's files outlive the overlay's
# churn there, and it can grow on its own. Mounted before the seed below, so
# root's authorized_keys lands on it.
if [ -n "$work_serial" ]; then
	work_dev=$(find_disk "$work_serial") || fail "no disk with serial $work_serial (the work disk) after 10s"
	mkdir -p "$NEWROOT/root" || fail "cannot create /root"
	mount -t ext4 "$work_dev" "$NEWROOT/root" || fail "cannot mount the work disk $work_dev on /root"
	chown 0:0 "$NEWROOT/root" && chmod 0700 "$NEWROOT/root"
fi

# install SRC DEST MODE: a root-owned copy of a seed file.
install_seed() {
	[ -f "$1" ] || return 0
	rm -f "$2"
	cp "$1" "$2" && chown 0:0 "$2" && chmod "$3" "$2" || fail "cannot install $2"
}

seed="$NEWROOT$STATE/overlay/$SEED_DIR"
if [ -d "$seed" ]; then
	mkdir -p "$NEWROOT/root/.ssh" "$NEWROOT/etc/ssh" || fail "cannot create /root/.ssh"
	chown 0:0 "$NEWROOT/root/.ssh" && chmod 0700 "$NEWROOT/root/.ssh"
	install_seed "$seed/authorized_keys" "$NEWROOT/root/.ssh/authorized_keys" 0600
	install_seed "$seed/ssh_host_ed25519_key" "$NEWROOT/etc/ssh/ssh_host_ed25519_key" 0600
	install_seed "$seed/ssh_host_ed25519_key.pub" "$NEWROOT/etc/ssh/ssh_host_ed25519_key.pub" 0644
fi

# Shared host directories (virtio-9p): banger.mount=TAG,ro|rw,GUEST_DIR each,
# mounted after /root so a share may sit inside the work disk.
for share in $mounts; do
	tag=${share%%,*}
	rest=${share#*,}
	mode=${rest%%,*}
	dir=${rest#*,}
	mkdir -p "$NEWROOT$dir" || fail "cannot create $dir for the shared directory $tag"
	mount -t 9p -o "trans=virtio,version=9p2000.L,msize=262144,access=client,$mode" "$tag" "$NEWROOT$dir" ||
		fail "cannot mount the shared directory $tag at $dir (does the kernel have 9p?)"
done

ip link set lo up
if [ -n "$ip_addr" ]; then
	tries=0
	while [ ! -e /sys/class/net/eth0 ] && [ "$tries" -lt 50 ]; do
		tries=$((tries + 1))
		sleep 0.1
	done
	ip addr add "$ip_addr" dev eth0 || fail "cannot set address $ip_addr on eth0"
	ip link set eth0 up || fail "cannot bring eth0 up"
	if [ -n "$gateway" ]; then
		ip route add default via "$gateway" dev eth0 || fail "cannot add a route via $gateway"
	fi
fi

if [ -n "$dns" ]; then
	# Replace rather than write through: it is often a symlink into /run.
	rm -f "$NEWROOT/etc/resolv.conf"
	echo "nameserver $dns" >"$NEWROOT/etc/resolv.conf" || fail "cannot write /etc/resolv.conf"
fi

if [ -n "$guest_name" ]; then
	hostname "$guest_name"
	echo "$guest_name" >"$NEWROOT/etc/hostname" || fail "cannot write /etc/hostname"
	if ! grep -qw "$guest_name" "$NEWROOT/etc/hosts" 2>/dev/null; then
		echo "127.0.1.1 $guest_name" >>"$NEWROOT/etc/hosts"
	fi
fi

# Follow $2 inside root $1 as the kernel will after switch_root, where an
# absolute symlink (/sbin/init -> /lib/systemd/systemd) means the new root.
resolve_in_root() {
	rest=${2#/} cur= hops=0
	while [ -n "$rest" ]; do
		part=${rest%%/*}
		case "$rest" in
		*/*) rest=${rest#*/} ;;
		*) rest= ;;
		esac
		case "$part" in
		'' | .) continue ;;
		..) cur=${cur%/*}; continue ;;
		esac
		if [ -L "$1$cur/$part" ]; then
			hops=$((hops + 1))
			[ "$hops" -le 40 ] || return 1
			target=$(readlink "$1$cur/$part")
			case "$target" in /*) cur= ;; esac
			rest="${target#/}${rest:+/$rest}"
		else
			cur="$cur/$part"
		fi
	done
	echo "$1$cur"
}

init_path=$(resolve_in_root "$NEWROOT" "$guest_init")
if [ -z "$init_path" ] || [ ! -f "$init_path" ] || [ ! -x "$init_path" ]; then
	fail "the image has no executable $guest_init; it cannot boot (does it contain an init system?)"
fi

for fs in dev proc sys; do
	mkdir -p "$NEWROOT/$fs"
	mount --move "/$fs" "$NEWROOT/$fs" || fail "cannot move /$fs into the new root"
done

say "switching root"
exec switch_root "$NEWROOT" "$guest_init"
