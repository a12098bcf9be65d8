package main

import (
	"errors"
	"syscall"
)

// opError is a request's failure as CLOSE reports it.
type opError struct {
	msg   string
	errno string
}

func (e *opError) Error() string { return e.msg }

func badRequest(msg string) error { return &opError{msg: msg, errno: "EINVAL"} }

var errnoNames = map[syscall.Errno]string{
	syscall.EPERM: "EPERM", syscall.ENOENT: "ENOENT", syscall.ESRCH: "ESRCH",
	syscall.EINTR: "EINTR", syscall.EIO: "EIO", syscall.E2BIG: "E2BIG",
	syscall.ENOEXEC: "ENOEXEC", syscall.EBADF: "EBADF", syscall.EAGAIN: "EAGAIN",
	syscall.ENOMEM: "ENOMEM", syscall.EACCES: "EACCES", syscall.EBUSY: "EBUSY",
	syscall.EEXIST: "EEXIST", syscall.EXDEV: "EXDEV", syscall.ENOTDIR: "ENOTDIR",
	syscall.EISDIR: "EISDIR", syscall.EINVAL: "EINVAL", syscall.EMFILE: "EMFILE",
	syscall.ETXTBSY: "ETXTBSY", syscall.EFBIG: "EFBIG", syscall.ENOSPC: "ENOSPC",
	syscall.EROFS: "EROFS", syscall.EMLINK: "EMLINK", syscall.EPIPE: "EPIPE",
	syscall.ENAMETOOLONG: "ENAMETOOLONG", syscall.ENOSYS: "ENOSYS",
	syscall.ENOTEMPTY: "ENOTEMPTY", syscall.ELOOP: "ELOOP", syscall.ENOTSUP: "ENOTSUP",
	syscall.ETIMEDOUT: "ETIMEDOUT", syscall.ECANCELED: "ECANCELED",
	syscall.EDQUOT: "EDQUOT", syscall.ENXIO: "ENXIO", syscall.ENODEV: "ENODEV",
	syscall.ECONNREFUSED: "ECONNREFUSED", syscall.ECONNRESET: "ECONNRESET",
	syscall.ECONNABORTED: "ECONNABORTED", syscall.ENETUNREACH: "ENETUNREACH",
	syscall.EHOSTUNREACH: "EHOSTUNREACH", syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL",
}

// errnoOf names the errno behind err ("EIO" when there is none).
func errnoOf(err error) string {
	var op *opError
	if errors.As(err, &op) {
		return op.errno
	}
	if errors.Is(err, errCancelled) {
		return "ECANCELED"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if name, ok := errnoNames[errno]; ok {
			return name
		}
	}
	return "EIO"
}
