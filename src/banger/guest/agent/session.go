package main

// Sessions: one per SYNC. A session owns the channels its host opened; a
// newer session (on any transport) cancels them, so a restarted daemon never
// inherits processes it did not start.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

const agentName = "banger-agent/1.0"

// errGone: the session ended (superseded, or its host went away).
var errGone = errors.New("the host connection is gone")

// conn is one byte stream to the host.
type conn interface {
	Read(p []byte) (int, error)
	// writeAll writes all of p or fails; it never blocks for ever on a host that left.
	writeAll(p []byte) error
	Close() error
	String() string
}

// link serialises writes of every session that uses one conn.
type link struct {
	c   conn
	wmu sync.Mutex
}

type agent struct {
	// guest: ops that change the machine (identity, clock, poweroff) are allowed.
	guest bool
	// device: the network device identity configures; none given is eth0
	// in a guest and none at all on a host.
	device  string
	mu      sync.Mutex
	current *session
	serial  uint64
}

type session struct {
	id    uint64
	l     *link
	a     *agent
	dead  atomic.Bool
	mu    sync.Mutex
	chans map[uint32]*channel
	last  uint32
	hello bool // touched only by the reading goroutine
}

func (a *agent) networkDevice() string {
	if a.device == "" {
		return "eth0"
	}
	return a.device
}

// begin starts a new session on l and ends the current one.
func (a *agent) begin(l *link) *session {
	a.mu.Lock()
	a.serial++
	s := &session{id: a.serial, l: l, a: a, chans: map[uint32]*channel{}}
	old := a.current
	a.current = s
	a.mu.Unlock()
	if old != nil {
		old.end()
		if old.l != l {
			// A socket's older connection: its host has been superseded.
			_ = old.l.c.Close()
		}
	}
	return s
}

// end cancels every channel of the session; their CLOSE frames go nowhere.
func (s *session) end() {
	s.dead.Store(true)
	s.mu.Lock()
	chans := make([]*channel, 0, len(s.chans))
	for _, ch := range s.chans {
		chans = append(chans, ch)
	}
	s.mu.Unlock()
	for _, ch := range chans {
		ch.cancel()
	}
}

func (s *session) send(ch uint32, k kind, payload []byte) error {
	s.l.wmu.Lock()
	defer s.l.wmu.Unlock()
	if s.dead.Load() {
		return errGone
	}
	if err := s.l.c.writeAll(encodeFrame(ch, k, payload)); err != nil {
		s.dead.Store(true)
		return errGone
	}
	return nil
}

func (s *session) sendJSON(ch uint32, k kind, v any) error {
	return s.send(ch, k, jsonPayload(v))
}

// serve reads SYNC, then frames, until the conn fails; a framing error
// sends ERROR and waits for the next SYNC.
func (a *agent) serve(l *link, r *bufio.Reader) error {
	synced := false
	for {
		if !synced {
			if err := awaitSync(r); err != nil {
				return err
			}
		}
		s := a.begin(l)
		err := s.run(r)
		synced = errors.Is(err, errResync)
		if synced {
			s.dead.Store(true)
			continue
		}
		if errors.Is(err, errFraming) {
			_ = s.sendJSON(0, kError, map[string]any{"error": err.Error() + "; send SYNC"})
			s.dead.Store(true)
			log.Printf("session %d: %v; waiting for SYNC", s.id, err)
			continue
		}
		s.dead.Store(true)
		return err
	}
}

func (s *session) run(r *bufio.Reader) error {
	for {
		f, err := readFrame(r)
		if err != nil {
			return err
		}
		s.dispatch(f)
	}
}

func (s *session) dispatch(f frame) {
	if f.kind == kHello {
		s.onHello(f)
		return
	}
	if !s.hello {
		_ = s.sendJSON(0, kError, map[string]any{"error": "send HELLO first"})
		return
	}
	switch f.kind {
	case kOpen:
		s.onOpen(f)
	case kData, kEOF, kWindow, kControl, kCancel:
		s.mu.Lock()
		ch := s.chans[f.ch]
		s.mu.Unlock()
		if ch != nil {
			// A frame for a channel that has just closed is not an error.
			ch.deliver(f)
		}
	default:
		_ = s.sendJSON(f.ch, kError, map[string]any{
			"error": fmt.Sprintf("the host may not send frames of kind %d", f.kind),
		})
	}
}

type helloRequest struct {
	Min  *int   `json:"min"`
	Max  *int   `json:"max"`
	Host string `json:"host"`
}

func (s *session) onHello(f frame) {
	var req helloRequest
	if err := json.Unmarshal(f.payload, &req); err != nil || req.Min == nil || req.Max == nil {
		_ = s.sendJSON(0, kError, map[string]any{
			"error": "HELLO needs {\"min\": N, \"max\": N}", "min": versionMin, "max": versionMax,
		})
		return
	}
	version := versionMax
	if *req.Max < version {
		version = *req.Max
	}
	if version < versionMin || version < *req.Min {
		_ = s.sendJSON(0, kError, map[string]any{
			"error": fmt.Sprintf("this agent speaks versions %d to %d; the host asked for %d to %d",
				versionMin, versionMax, *req.Min, *req.Max),
			"min": versionMin, "max": versionMax,
		})
		return
	}
	s.hello = true
	caps := make([]string, 0, len(ops))
	for name := range ops {
		caps = append(caps, name)
	}
	sort.Strings(caps)
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	_ = s.sendJSON(0, kHello, map[string]any{
		"version": version, "agent": agentName, "pid": os.Getpid(),
		"boot_id": strings.TrimSpace(string(bootID)), "caps": caps,
	})
}

func (s *session) onOpen(f frame) {
	fail := func(msg string) {
		_ = s.sendJSON(f.ch, kError, map[string]any{"error": msg})
	}
	if f.ch == 0 || f.ch%2 == 0 || f.ch <= s.last {
		fail(fmt.Sprintf("channel %d: requests open odd, increasing channels", f.ch))
		return
	}
	var head struct {
		Op string `json:"op"`
	}
	if err := json.Unmarshal(f.payload, &head); err != nil || head.Op == "" {
		fail("OPEN needs a JSON object with \"op\"")
		return
	}
	s.last = f.ch
	ch := newChannel(s, f.ch)
	handler, known := ops[head.Op]
	if !known {
		ch.finish(nil, &opError{msg: "unknown op " + head.Op, errno: "ENOSYS"})
		return
	}
	s.mu.Lock()
	s.chans[f.ch] = ch
	s.mu.Unlock()
	if s.dead.Load() {
		ch.cancel() // ended while this request was being read
	}
	go func() {
		result, err := handler(ch, f.payload)
		ch.finish(result, err)
	}()
}
