package main

// exec: a command in its own session and process group, with stdout and
// stderr streamed apart (or one pty), stdin from the host, signals by
// CONTROL, and a timeout that kills the whole group.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

type ptyRequest struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
	Term string `json:"term"`
}

type execRequest struct {
	Argv    []string          `json:"argv"`
	Cwd     string            `json:"cwd"`
	Env     map[string]string `json:"env"`
	Stdin   bool              `json:"stdin"`
	Pty     *ptyRequest       `json:"pty"`
	Timeout float64           `json:"timeout"`
}

// environ: a login-like base (PATH, HOME, LANG, TERM for a pty), then the request's env.
func environ(req *execRequest) []string {
	env := map[string]string{"PATH": defaultPath, "HOME": "/root", "USER": "root", "LANG": "C.UTF-8"}
	if req.Pty != nil {
		env["TERM"] = "xterm-256color"
		if req.Pty.Term != "" {
			env["TERM"] = req.Pty.Term
		}
	}
	for k, v := range req.Env {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// lookPath resolves argv[0] against the command's own PATH, not the agent's.
func lookPath(name, path, cwd string) (string, error) {
	notFound := &opError{msg: name + ": command not found", errno: "ENOENT"}
	if strings.Contains(name, "/") {
		full := name
		if !filepath.IsAbs(full) {
			full = filepath.Join(cwd, name)
		}
		st, err := os.Stat(full)
		if err != nil {
			return "", &opError{msg: name + ": " + err.Error(), errno: errnoOf(err)}
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return "", &opError{msg: name + ": permission denied", errno: "EACCES"}
		}
		return full, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		full := filepath.Join(dir, name)
		if st, err := os.Stat(full); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return full, nil
		}
	}
	return "", notFound
}

func opExec(ch *channel, raw []byte) (map[string]any, error) {
	var req execRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, badRequest("exec: " + err.Error())
	}
	if len(req.Argv) == 0 {
		return nil, badRequest("exec needs a non-empty argv")
	}
	if req.Cwd == "" {
		req.Cwd = "/root"
		if st, err := os.Stat(req.Cwd); err != nil || !st.IsDir() {
			req.Cwd = "/"
		}
	}
	env := environ(&req)
	pathVar := defaultPath
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			pathVar = kv[5:]
		}
	}
	binary, err := lookPath(req.Argv[0], pathVar, req.Cwd)
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{Path: binary, Args: req.Argv, Dir: req.Cwd, Env: env}
	run := &running{ch: ch, cmd: cmd}
	if req.Pty != nil {
		err = run.startPty(req.Pty, req.Stdin)
	} else {
		err = run.startPipes(req.Stdin)
	}
	if err != nil {
		return nil, startError(req.Argv[0], req.Cwd, err)
	}
	return run.wait(time.Duration(req.Timeout * float64(time.Second)))
}

func startError(name, cwd string, err error) error {
	var pathErr *os.PathError
	if errors.As(err, &pathErr) && pathErr.Op == "chdir" {
		return &opError{msg: "cwd " + cwd + ": " + pathErr.Err.Error(), errno: errnoOf(pathErr.Err)}
	}
	return &opError{msg: name + ": " + err.Error(), errno: errnoOf(err)}
}

type running struct {
	ch    *channel
	cmd   *exec.Cmd
	pumps sync.WaitGroup
	// closers are the parent's ends, closed once output is over.
	closers []io.Closer
	master  *os.File
	mu      sync.Mutex
	killed  bool
}

func (r *running) startPipes(stdin bool) error {
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	r.cmd.Stdout, r.cmd.Stderr = outW, errW
	var inW *os.File
	if stdin {
		var inR *os.File
		if inR, inW, err = os.Pipe(); err != nil {
			return err
		}
		r.cmd.Stdin = inR
		defer inR.Close()
	}
	err = r.cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		if inW != nil {
			inW.Close()
		}
		return err
	}
	r.closers = append(r.closers, outR, errR)
	r.pump(outR, streamOut)
	r.pump(errR, streamErr)
	if inW != nil {
		go func() {
			r.feed(inW, func() {})
			inW.Close() // at EOF, and when the exec ends without one
		}()
	}
	return nil
}

func (r *running) startPty(p *ptyRequest, stdin bool) error {
	master, slave, err := openPty()
	if err != nil {
		return err
	}
	if p.Rows > 0 && p.Cols > 0 {
		_ = setWinsize(master, p.Rows, p.Cols)
	}
	r.cmd.Stdin, r.cmd.Stdout, r.cmd.Stderr = slave, slave, slave
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err = r.cmd.Start()
	slave.Close()
	if err != nil {
		master.Close()
		return err
	}
	r.master = master
	r.closers = append(r.closers, master)
	r.pump(master, streamOut)
	if stdin {
		// EOF on a pty's input is the terminal's end-of-file character.
		go r.feed(master, func() { _, _ = master.Write([]byte{4}) })
	}
	return nil
}

// pump copies one output of the command to its stream; a pty's master
// reads EIO once the last holder of the slave has gone, which is its EOF.
func (r *running) pump(f *os.File, stream byte) {
	r.pumps.Add(1)
	go func() {
		defer r.pumps.Done()
		buf := make([]byte, dataChunk)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if r.ch.write(stream, buf[:n]) != nil {
					return
				}
			}
			if err != nil {
				_ = r.ch.eof(stream)
				return
			}
		}
	}()
}

// feed copies the host's stream 0 into the command until EOF; input the
// command no longer reads is consumed anyway, so the host is never stalled.
func (r *running) feed(w io.Writer, atEOF func()) {
	buf := make([]byte, dataChunk)
	broken := false
	for {
		n, err := r.ch.Read(buf)
		if n > 0 && !broken {
			if _, werr := w.Write(buf[:n]); werr != nil {
				broken = true
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && !broken {
				atEOF()
			}
			return
		}
	}
}

func (r *running) signal(sig syscall.Signal) {
	_ = syscall.Kill(-r.cmd.Process.Pid, sig)
}

func (r *running) kill() {
	r.mu.Lock()
	r.killed = true
	r.mu.Unlock()
	r.signal(syscall.SIGKILL)
}

func (r *running) wait(timeout time.Duration) (map[string]any, error) {
	pid := r.cmd.Process.Pid
	r.ch.setControl(func(req controlRequest) {
		if req.Signal != nil && *req.Signal > 0 && *req.Signal < 65 {
			r.signal(syscall.Signal(*req.Signal))
		}
		if len(req.Resize) == 2 && r.master != nil {
			_ = setWinsize(r.master, req.Resize[0], req.Resize[1])
		}
	})
	_ = r.ch.event(map[string]any{"started": map[string]any{"pid": pid}})
	exited := make(chan error, 1)
	go func() { exited <- r.cmd.Wait() }()
	var deadline <-chan time.Time
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		deadline = timer.C
	}
	timedOut := false
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-deadline:
		timedOut = true
		r.kill()
		waitErr = <-exited
	case <-r.ch.ctx.Done():
		r.kill()
		waitErr = <-exited
	}
	r.drain()
	state := r.cmd.ProcessState
	if state == nil {
		return nil, fmt.Errorf("waiting for %d: %w", pid, waitErr)
	}
	status := state.Sys().(syscall.WaitStatus)
	if status.Signaled() {
		return map[string]any{"signal": int(status.Signal()), "timed_out": timedOut}, nil
	}
	return map[string]any{"exit": status.ExitStatus()}, nil
}

// drain waits for the output to end. Background children may keep a pipe
// open (the exec then lasts as long as they do, as over SSH); after a kill
// the group is gone, so a straggler that escaped it gets a second at most.
func (r *running) drain() {
	done := make(chan struct{})
	go func() { r.pumps.Wait(); close(done) }()
	r.mu.Lock()
	killed := r.killed
	r.mu.Unlock()
	if killed {
		select {
		case <-done:
		case <-time.After(time.Second):
		}
	} else {
		select {
		case <-done:
		case <-r.ch.ctx.Done():
			r.kill()
			select {
			case <-done:
			case <-time.After(time.Second):
			}
		}
	}
	for _, c := range r.closers {
		c.Close()
	}
}
