package main

// Files: read, write (to a temporary name, renamed into place at EOF), stat
// and list.

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

type pathRequest struct {
	Path   string `json:"path"`
	Mode   *int   `json:"mode"`
	Mkdirs bool   `json:"mkdirs"`
	Follow bool   `json:"follow"`
}

func parsePath(op string, raw []byte) (*pathRequest, error) {
	var req pathRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, badRequest(op + ": " + err.Error())
	}
	if !filepath.IsAbs(req.Path) {
		return nil, badRequest(op + " needs an absolute path, not " + req.Path)
	}
	return &req, nil
}

func fileError(err error) error {
	var pathErr *os.PathError
	if errors.As(err, &pathErr) {
		return &opError{msg: pathErr.Path + ": " + pathErr.Err.Error(), errno: errnoOf(pathErr.Err)}
	}
	return err
}

func opRead(ch *channel, raw []byte) (map[string]any, error) {
	req, err := parsePath("read", raw)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(req.Path)
	if err != nil {
		return nil, fileError(err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, &opError{msg: req.Path + " is a directory", errno: "EISDIR"}
	}
	size, err := io.CopyBuffer(writer{ch, streamOut}, f, make([]byte, dataChunk))
	if err != nil {
		return nil, fileError(err)
	}
	if err := ch.eof(streamOut); err != nil {
		return nil, err
	}
	return map[string]any{"size": size}, nil
}

func opWrite(ch *channel, raw []byte) (map[string]any, error) {
	req, err := parsePath("write", raw)
	if err != nil {
		return nil, err
	}
	dir, base := filepath.Split(req.Path)
	if base == "" {
		return nil, badRequest("write needs a file name, not " + req.Path)
	}
	if req.Mkdirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fileError(err)
		}
	}
	mode := os.FileMode(0o644)
	if req.Mode != nil {
		mode = os.FileMode(*req.Mode) & os.ModePerm
	} else if st, err := os.Stat(req.Path); err == nil {
		mode = st.Mode() & os.ModePerm
	}
	tmp, err := os.CreateTemp(dir, "."+base+".banger-")
	if err != nil {
		return nil, fileError(err)
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	size, err := io.CopyBuffer(tmp, ch, make([]byte, dataChunk))
	if err != nil {
		return nil, fileError(err)
	}
	// chmod after writing: the mode is exact, whatever the umask, and a
	// read-only mode never stops the copy.
	if err := tmp.Chmod(mode | extraBits(req.Mode)); err != nil {
		return nil, fileError(err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fileError(err)
	}
	if err := os.Rename(tmp.Name(), req.Path); err != nil {
		return nil, fileError(err)
	}
	keep = true
	return map[string]any{"size": size}, nil
}

// extraBits carries setuid, setgid and sticky from a numeric mode.
func extraBits(mode *int) os.FileMode {
	if mode == nil {
		return 0
	}
	var out os.FileMode
	if *mode&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if *mode&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if *mode&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

func fileType(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return "file"
	case m.IsDir():
		return "dir"
	case m&os.ModeSymlink != 0:
		return "symlink"
	case m&os.ModeNamedPipe != 0:
		return "fifo"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeCharDevice != 0:
		return "char"
	case m&os.ModeDevice != 0:
		return "block"
	}
	return "other"
}

func statOf(path string, st os.FileInfo) map[string]any {
	sys := st.Sys().(*syscall.Stat_t)
	out := map[string]any{
		"name": st.Name(), "type": fileType(st.Mode()), "size": st.Size(),
		"mode": int(sys.Mode & 0o7777), "uid": sys.Uid, "gid": sys.Gid,
		"mtime": float64(st.ModTime().UnixNano()) / 1e9,
	}
	if st.Mode()&os.ModeSymlink != 0 {
		if target, err := os.Readlink(path); err == nil {
			out["target"] = target
		}
	}
	return out
}

func opStat(ch *channel, raw []byte) (map[string]any, error) {
	req, err := parsePath("stat", raw)
	if err != nil {
		return nil, err
	}
	var st os.FileInfo
	if req.Follow {
		st, err = os.Stat(req.Path)
	} else {
		st, err = os.Lstat(req.Path)
	}
	if err != nil {
		return nil, fileError(err)
	}
	return map[string]any{"stat": statOf(req.Path, st)}, nil
}

func opList(ch *channel, raw []byte) (map[string]any, error) {
	req, err := parsePath("list", raw)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(req.Path)
	if err != nil {
		return nil, fileError(err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	out := make([]map[string]any, 0, len(entries))
	for _, entry := range entries {
		full := filepath.Join(req.Path, entry.Name())
		st, err := os.Lstat(full)
		if err != nil {
			continue // gone since the directory was read
		}
		out = append(out, statOf(full, st))
	}
	return map[string]any{"entries": out}, nil
}
