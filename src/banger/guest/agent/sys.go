package main

// The few Linux calls the standard library's syscall package lacks, made
// raw: pty set-up, AF_VSOCK, the clock, the entropy pool and poll.

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

const (
	tiocgptn      = 0x80045430
	tiocsptlck    = 0x40045431
	tiocswinsz    = 0x5414
	rndaddentropy = 0x40085203
	rndreseedcrng = 0x5207 // _IO('R', 0x07), Linux 4.17 and later
	afVsock       = 40
	vmaddrCIDAny  = 0xffffffff
	pollIn        = 0x1
	pollOut       = 0x4
	pollErr       = 0x8
	pollHup       = 0x10
)

func ioctl(fd, req, arg uintptr) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, req, arg); errno != 0 {
		return errno
	}
	return nil
}

// openPty opens a new pty pair through /dev/ptmx.
func openPty() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	var unlock int32
	var number uint32
	if err = ioctl(master.Fd(), tiocsptlck, uintptr(unsafe.Pointer(&unlock))); err == nil {
		err = ioctl(master.Fd(), tiocgptn, uintptr(unsafe.Pointer(&number)))
	}
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("pty: %w", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", number), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

func setWinsize(f *os.File, rows, cols uint16) error {
	ws := [4]uint16{rows, cols, 0, 0}
	return ioctl(f.Fd(), tiocswinsz, uintptr(unsafe.Pointer(&ws)))
}

// sockaddrVM is struct sockaddr_vm.
type sockaddrVM struct {
	family    uint16
	reserved1 uint16
	port      uint32
	cid       uint32
	zero      [4]uint8
}

// listenVsock listens on the guest's vsock port for the host.
func listenVsock(port uint32) (int, error) {
	fd, err := syscall.Socket(afVsock, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	addr := sockaddrVM{family: afVsock, port: port, cid: vmaddrCIDAny}
	_, _, errno := syscall.Syscall(syscall.SYS_BIND, uintptr(fd),
		uintptr(unsafe.Pointer(&addr)), unsafe.Sizeof(addr))
	if errno != 0 {
		syscall.Close(fd)
		return -1, errno
	}
	if err := syscall.Listen(fd, 4); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// acceptRaw accepts without decoding the peer's address, which the
// syscall package cannot do for AF_VSOCK.
func acceptRaw(fd int) (int, error) {
	for {
		nfd, _, errno := syscall.Syscall6(syscall.SYS_ACCEPT4, uintptr(fd), 0, 0,
			syscall.SOCK_CLOEXEC, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(nfd), nil
	}
}

func setClock(unixNs int64) error {
	ts := syscall.NsecToTimespec(unixNs)
	const clockRealtime = 0
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_SETTIME, clockRealtime,
		uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// addEntropy mixes data into the kernel's pool and credits it in full.
func addEntropy(data []byte) error {
	f, err := os.OpenFile("/dev/random", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// struct rand_pool_info: entropy_count (bits), buf_size (bytes), buf.
	buf := make([]byte, 8+len(data))
	*(*int32)(unsafe.Pointer(&buf[0])) = int32(len(data) * 8)
	*(*int32)(unsafe.Pointer(&buf[4])) = int32(len(data))
	copy(buf[8:], data)
	return ioctl(f.Fd(), rndaddentropy, uintptr(unsafe.Pointer(&buf[0])))
}

// reseedCRNG makes the kernel's CRNG draw from the pool now. Credited entropy
// is otherwise used only at the next timed reseed, and until then two forks of
// one snapshot read the same "random" bytes.
func reseedCRNG() error {
	f, err := os.OpenFile("/dev/random", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return ioctl(f.Fd(), rndreseedcrng, 0)
}

type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

// poll1 waits up to ms milliseconds for events on one descriptor.
func poll1(fd int, events int16, ms int) (int16, error) {
	p := pollFd{fd: int32(fd), events: events}
	for {
		_, _, errno := syscall.Syscall(syscall.SYS_POLL, uintptr(unsafe.Pointer(&p)), 1, uintptr(ms))
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return p.revents, nil
	}
}
