package main

// Transports: the virtio-serial port named banger.agent (QEMU), an AF_VSOCK
// listener (Firecracker) and a unix socket (tests on the host). A serial
// port outlives its host: when the host end hangs up the session is over
// and the agent waits for the next host and its SYNC. A socket connection
// is one session; a newer one supersedes the older.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

var errHangup = errors.New("the host end hung up")

const serialPortName = "banger.agent"

// findSerialPort returns /dev/vportNpM for the port named banger.agent.
func findSerialPort() (string, error) {
	names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err == nil && strings.TrimSpace(string(data)) == serialPortName {
			return "/dev/" + filepath.Base(filepath.Dir(name)), nil
		}
	}
	return "", fmt.Errorf("no virtio-serial port named %s", serialPortName)
}

type serialConn struct {
	fd   int
	path string
}

func openSerial(path string) (*serialConn, error) {
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_NONBLOCK|syscall.O_CLOEXEC|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &serialConn{fd: fd, path: path}, nil
}

func (c *serialConn) String() string { return "serial " + c.path }

// Read returns errHangup when no host is connected: a virtio-serial port
// then reads 0 bytes and polls POLLHUP.
func (c *serialConn) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(c.fd, p)
		if n > 0 {
			return n, nil
		}
		if err == syscall.EAGAIN || err == syscall.EINTR {
			rev, perr := poll1(c.fd, pollIn, 1000)
			if perr != nil {
				return 0, perr
			}
			if rev&pollHup != 0 && rev&pollIn == 0 {
				return 0, errHangup
			}
			continue
		}
		if err == nil {
			return 0, errHangup
		}
		return 0, err
	}
}

func (c *serialConn) writeAll(p []byte) error {
	for len(p) > 0 {
		chunk := p
		if len(chunk) > 32<<10 {
			chunk = chunk[:32<<10]
		}
		n, err := syscall.Write(c.fd, chunk)
		if n > 0 {
			p = p[n:]
			continue
		}
		if err == syscall.EAGAIN || err == syscall.EINTR {
			rev, perr := poll1(c.fd, pollOut, 1000)
			if perr != nil {
				return perr
			}
			if rev&(pollHup|pollErr) != 0 && rev&pollOut == 0 {
				return errHangup
			}
			continue
		}
		if err == nil {
			err = io.ErrShortWrite
		}
		return err
	}
	return nil
}

// waitHost sleeps until a host end is connected. The port polls POLLHUP at
// once while none is, so poll alone would spin. A restored guest sees its
// port closed until bangerd connects to the new VMM's socket, and every
// restore waits on this: a short nap, so the wait ends soon after the host
// comes (it was 100 ms, half of it on every restore on average).
func (c *serialConn) waitHost() {
	for {
		rev, err := poll1(c.fd, pollIn, 0)
		if err == nil && (rev&pollHup == 0 || rev&pollIn != 0) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *serialConn) Close() error { return nil } // the port is the agent's for life

func serveSerial(a *agent, c *serialConn) {
	l := &link{c: c}
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		c.waitHost()
		err := a.serve(l, r)
		if errors.Is(err, errHangup) {
			log.Printf("%s: the host hung up; waiting for the next SYNC", c)
			continue
		}
		log.Printf("%s: %v", c, err)
		time.Sleep(time.Second)
	}
}

// streamConn is a socket connection (vsock or unix).
type streamConn struct {
	rw   io.ReadWriteCloser
	name string
}

func (c *streamConn) Read(p []byte) (int, error) { return c.rw.Read(p) }
func (c *streamConn) String() string             { return c.name }
func (c *streamConn) Close() error               { return c.rw.Close() }

func (c *streamConn) writeAll(p []byte) error {
	_, err := c.rw.Write(p)
	return err
}

func serveStream(a *agent, c *streamConn) {
	defer c.Close()
	err := a.serve(&link{c: c}, bufio.NewReaderSize(c, 64<<10))
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) &&
		!errors.Is(err, os.ErrClosed) {
		log.Printf("%s: %v", c, err)
	}
}

func serveVsock(a *agent, fd int, port uint32) {
	for {
		nfd, err := acceptRaw(fd)
		if err != nil {
			log.Printf("vsock port %d: accept: %v", port, err)
			time.Sleep(time.Second)
			continue
		}
		// Non-blocking, so closing a superseded connection wakes its reader.
		_ = syscall.SetNonblock(nfd, true)
		f := os.NewFile(uintptr(nfd), "vsock")
		go serveStream(a, &streamConn{rw: f, name: fmt.Sprintf("vsock port %d", port)})
	}
}

func listenUnix(path string) (net.Listener, error) {
	// A socket left by an earlier run is replaced; nothing else ever is.
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path)
	}
	return net.Listen("unix", path)
}

func serveUnix(a *agent, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Printf("%s: accept: %v", ln.Addr(), err)
			return
		}
		go serveStream(a, &streamConn{rw: c, name: "unix " + ln.Addr().String()})
	}
}
