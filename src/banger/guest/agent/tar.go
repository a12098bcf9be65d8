package main

// Tar streams each way. tar_get keeps symlinks as symlinks and modes as
// they are. tar_put is the hostile direction: every name is checked (no
// absolute name, no ".." anywhere) and every path is walked one component
// at a time from a descriptor of dir with O_NOFOLLOW, so neither a name nor
// a symlink an earlier entry (or the guest) made can lead outside dir.

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"
)

const atSymlinkNofollow = 0x100

type tarRequest struct {
	Dir   string   `json:"dir"`
	Names []string `json:"names"`
}

func parseTar(op string, raw []byte) (*tarRequest, error) {
	var req tarRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, badRequest(op + ": " + err.Error())
	}
	if !filepath.IsAbs(req.Dir) {
		return nil, badRequest(op + " needs an absolute dir, not " + req.Dir)
	}
	return &req, nil
}

// cleanName is name relative to dir, or an error when it could leave dir;
// "" means dir itself.
func cleanName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", badRequest(fmt.Sprintf("%q is an absolute name", name))
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", badRequest(fmt.Sprintf("%q has a .. component", name))
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", nil
	}
	return clean, nil
}

func opTarGet(ch *channel, raw []byte) (map[string]any, error) {
	req, err := parseTar("tar_get", raw)
	if err != nil {
		return nil, err
	}
	if len(req.Names) == 0 {
		req.Names = []string{"."}
	}
	tw := tar.NewWriter(writer{ch, streamOut})
	// A file with more links is sent once; its other names are hard links to it.
	seen := map[[2]uint64]string{}
	files := 0
	for _, name := range req.Names {
		rel, err := cleanName(name)
		if err != nil {
			return nil, err
		}
		top := filepath.Join(req.Dir, rel)
		err = filepath.Walk(top, func(full string, st os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			if st.Mode()&os.ModeSocket != 0 {
				return nil // a socket has no archive form
			}
			inner, _ := filepath.Rel(req.Dir, full)
			if inner == "." {
				return nil
			}
			files++
			if sys := st.Sys().(*syscall.Stat_t); st.Mode().IsRegular() && sys.Nlink > 1 {
				id := [2]uint64{sys.Dev, sys.Ino}
				if first, ok := seen[id]; ok {
					return addHardLink(tw, inner, first, st)
				}
				seen[id] = inner
			}
			return addEntry(tw, full, inner, st)
		})
		if err != nil {
			return nil, fileError(err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := ch.eof(streamOut); err != nil {
		return nil, err
	}
	return map[string]any{"files": files}, nil
}

func addEntry(tw *tar.Writer, full, name string, st os.FileInfo) error {
	target := ""
	if st.Mode()&os.ModeSymlink != 0 {
		var err error
		if target, err = os.Readlink(full); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(st, target)
	if err != nil {
		return err
	}
	hdr.Name = name
	if st.IsDir() {
		hdr.Name += "/"
	}
	hdr.Mode = int64(st.Sys().(*syscall.Stat_t).Mode & 0o7777)
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(full)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyN(tw, f, hdr.Size)
	return err
}

func addHardLink(tw *tar.Writer, name, target string, st os.FileInfo) error {
	hdr, err := tar.FileInfoHeader(st, "")
	if err != nil {
		return err
	}
	hdr.Typeflag, hdr.Name, hdr.Linkname, hdr.Size = tar.TypeLink, name, target, 0
	hdr.Mode = int64(st.Sys().(*syscall.Stat_t).Mode & 0o7777)
	return tw.WriteHeader(hdr)
}

func opTarPut(ch *channel, raw []byte) (map[string]any, error) {
	req, err := parseTar("tar_put", raw)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(req.Dir, 0o755); err != nil {
		return nil, fileError(err)
	}
	root, err := syscall.Open(req.Dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fileError(&os.PathError{Op: "open", Path: req.Dir, Err: err})
	}
	defer syscall.Close(root)
	x := &extractor{root: root}
	br := bufio.NewReaderSize(ch, 64<<10)
	for {
		more, err := skipZeroBlocks(br)
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		tr := tar.NewReader(br)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, badRequest("tar_put: not a tar stream: " + err.Error())
			}
			if err := x.extract(hdr, tr); err != nil {
				return nil, err
			}
		}
	}
	return map[string]any{"files": x.files}, nil
}

// skipZeroBlocks passes the padding between archives in a row; false at the end.
func skipZeroBlocks(br *bufio.Reader) (bool, error) {
	for {
		block, err := br.Peek(512)
		if len(block) == 0 && errors.Is(err, io.EOF) {
			return false, nil
		}
		zero := true
		for _, b := range block {
			if b != 0 {
				zero = false
				break
			}
		}
		if !zero {
			if err != nil {
				return false, badRequest("tar_put: the stream ends inside a block")
			}
			return true, nil
		}
		if _, derr := br.Discard(len(block)); derr != nil {
			return false, derr
		}
		if err != nil {
			return false, nil
		}
	}
}

type extractor struct {
	root  int
	files int
}

// parent opens the directory holding name (creating missing ones, never
// following a symlink) and returns it with name's last component.
func (x *extractor) parent(name string, create bool) (int, string, error) {
	parts := strings.Split(name, "/")
	fd, err := syscall.Dup(x.root)
	if err != nil {
		return -1, "", err
	}
	for i, part := range parts[:len(parts)-1] {
		next, err := openDirAt(fd, part)
		if errors.Is(err, syscall.ENOENT) && create {
			if err = syscall.Mkdirat(fd, part, 0o755); err == nil || errors.Is(err, syscall.EEXIST) {
				next, err = openDirAt(fd, part)
			}
		}
		syscall.Close(fd)
		if err != nil {
			where := strings.Join(parts[:i+1], "/")
			if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR) {
				return -1, "", &opError{
					msg:   fmt.Sprintf("%s: %s is not a directory (symlinks are never followed)", name, where),
					errno: "ENOTDIR",
				}
			}
			return -1, "", &opError{msg: where + ": " + err.Error(), errno: errnoOf(err)}
		}
		fd = next
	}
	return fd, parts[len(parts)-1], nil
}

func openDirAt(dir int, name string) (int, error) {
	return syscall.Openat(dir, name,
		syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
}

func (x *extractor) extract(hdr *tar.Header, body io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil || name == "" {
		return err // the archive's own "./" is dir itself, which stays as it is
	}
	dir, last, err := x.parent(name, true)
	if err != nil {
		return err
	}
	defer syscall.Close(dir)
	mode := uint32(hdr.Mode & 0o7777)
	fail := func(err error) error {
		return &opError{msg: name + ": " + err.Error(), errno: errnoOf(err)}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		err = x.makeDir(dir, last, mode)
	case tar.TypeReg, tar.TypeRegA:
		err = x.makeFile(dir, last, mode, hdr, body)
	case tar.TypeSymlink:
		if err = replace(dir, last); err == nil {
			err = symlinkat(hdr.Linkname, dir, last)
		}
	case tar.TypeLink:
		err = x.makeLink(dir, last, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kinds := map[byte]uint32{tar.TypeChar: syscall.S_IFCHR, tar.TypeBlock: syscall.S_IFBLK,
			tar.TypeFifo: syscall.S_IFIFO}
		if err = replace(dir, last); err == nil {
			dev := int(hdr.Devmajor<<8 | hdr.Devminor&0xff | (hdr.Devminor&^0xff)<<12)
			err = syscall.Mknodat(dir, last, kinds[hdr.Typeflag]|mode, dev)
		}
	default:
		return nil // extended headers the reader did not fold in: nothing to make
	}
	if err != nil {
		var op *opError
		if errors.As(err, &op) {
			return err
		}
		return fail(err)
	}
	if hdr.Typeflag != tar.TypeLink {
		_ = syscall.Fchownat(dir, last, hdr.Uid, hdr.Gid, atSymlinkNofollow)
	}
	x.files++
	return nil
}

func (x *extractor) makeDir(dir int, last string, mode uint32) error {
	err := syscall.Mkdirat(dir, last, mode)
	if errors.Is(err, syscall.EEXIST) {
		var st syscall.Stat_t
		if err = fstatat(dir, last, &st); err != nil {
			return err
		}
		if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			if err = syscall.Unlinkat(dir, last); err != nil {
				return err
			}
			err = syscall.Mkdirat(dir, last, mode)
		}
	}
	if err != nil {
		return err
	}
	sub, err := openDirAt(dir, last)
	if err != nil {
		return err
	}
	defer syscall.Close(sub)
	return syscall.Fchmod(sub, mode)
}

func (x *extractor) makeFile(dir int, last string, mode uint32, hdr *tar.Header, body io.Reader) error {
	if err := replace(dir, last); err != nil {
		return err
	}
	fd, err := syscall.Openat(dir, last,
		syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), last)
	defer f.Close()
	if _, err := io.CopyBuffer(f, body, make([]byte, 64<<10)); err != nil {
		return err
	}
	_ = f.Chown(hdr.Uid, hdr.Gid) // before chmod: chown clears setuid bits
	if err := syscall.Fchmod(fd, mode); err != nil {
		return err
	}
	times := []syscall.Timespec{
		syscall.NsecToTimespec(hdr.ModTime.UnixNano()), syscall.NsecToTimespec(hdr.ModTime.UnixNano()),
	}
	return futimens(fd, times)
}

func (x *extractor) makeLink(dir int, last, target string) error {
	rel, err := cleanName(target)
	if err != nil || rel == "" {
		return badRequest(fmt.Sprintf("hard link %s -> %q leaves the directory", last, target))
	}
	tdir, tlast, err := x.parent(rel, false)
	if err != nil {
		return err
	}
	defer syscall.Close(tdir)
	if err := replace(dir, last); err != nil {
		return err
	}
	return linkat(tdir, tlast, dir, last)
}

// replace removes what is at dir/last unless it is a directory, so a new
// entry never writes through an old symlink.
func replace(dir int, last string) error {
	err := syscall.Unlinkat(dir, last)
	if err == nil || errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if errors.Is(err, syscall.EISDIR) {
		return &opError{msg: last + " is a directory in the way", errno: "EISDIR"}
	}
	return err
}

func cstr(s string) (*byte, error) { return syscall.BytePtrFromString(s) }

func fstatat(dir int, name string, st *syscall.Stat_t) error {
	p, err := cstr(name)
	if err != nil {
		return err
	}
	_, _, errno := syscall.Syscall6(syscall.SYS_NEWFSTATAT, uintptr(dir), uintptr(unsafe.Pointer(p)),
		uintptr(unsafe.Pointer(st)), atSymlinkNofollow, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func symlinkat(target string, dir int, name string) error {
	t, err := cstr(target)
	if err != nil {
		return err
	}
	n, err := cstr(name)
	if err != nil {
		return err
	}
	_, _, errno := syscall.Syscall(syscall.SYS_SYMLINKAT, uintptr(unsafe.Pointer(t)), uintptr(dir),
		uintptr(unsafe.Pointer(n)))
	if errno != 0 {
		return errno
	}
	return nil
}

func linkat(olddir int, oldname string, newdir int, newname string) error {
	o, err := cstr(oldname)
	if err != nil {
		return err
	}
	n, err := cstr(newname)
	if err != nil {
		return err
	}
	_, _, errno := syscall.Syscall6(syscall.SYS_LINKAT, uintptr(olddir), uintptr(unsafe.Pointer(o)),
		uintptr(newdir), uintptr(unsafe.Pointer(n)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func futimens(fd int, times []syscall.Timespec) error {
	_, _, errno := syscall.Syscall6(syscall.SYS_UTIMENSAT, uintptr(fd), 0,
		uintptr(unsafe.Pointer(&times[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
