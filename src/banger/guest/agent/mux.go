package main

// A channel: one request's streams, with the protocol's flow control. Input
// (stream 0) is buffered as it arrives, which the host's window bounds, and
// credited back as the handler consumes it; output (streams 1 and 2) waits
// for the host's credit, so a slow reader stalls only its own channel.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"sync"
)

var errCancelled = errors.New("cancelled by the host")

type channel struct {
	id     uint32
	s      *session
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	cond   *sync.Cond
	in     []byte
	inEOF  bool
	credit [3]int
	// control handles CONTROL frames; set by the ops that take them. Until it
	// is set they wait in pending: a host may signal the instant it has sent
	// OPEN (or seen "started"), before the op has got as far as taking them.
	control func(req controlRequest)
	pending []controlRequest
	// after runs once CLOSE has been sent (poweroff).
	after func()
	done  bool
}

// More early CONTROL frames than a caller would send before an op starts
// (a signal, a resize) are dropped rather than held without bound.
const maxPendingControls = 16

type controlRequest struct {
	Signal *int     `json:"signal"`
	Resize []uint16 `json:"resize"`
}

func newChannel(s *session, id uint32) *channel {
	ctx, cancel := context.WithCancel(context.Background())
	ch := &channel{id: id, s: s, ctx: ctx, cancel: cancel}
	ch.cond = sync.NewCond(&ch.mu)
	ch.credit = [3]int{initialWindow, initialWindow, initialWindow}
	go func() {
		<-ctx.Done()
		ch.mu.Lock()
		ch.cond.Broadcast()
		ch.mu.Unlock()
	}()
	return ch
}

// deliver runs on the session's reading goroutine and never blocks.
func (ch *channel) deliver(f frame) {
	switch f.kind {
	case kData:
		if len(f.payload) < 1 || f.payload[0] != streamIn {
			return
		}
		ch.mu.Lock()
		ch.in = append(ch.in, f.payload[1:]...)
		ch.cond.Broadcast()
		ch.mu.Unlock()
	case kEOF:
		if len(f.payload) < 1 || f.payload[0] != streamIn {
			return
		}
		ch.mu.Lock()
		ch.inEOF = true
		ch.cond.Broadcast()
		ch.mu.Unlock()
	case kWindow:
		if len(f.payload) != 5 || f.payload[0] > streamErr {
			return
		}
		ch.mu.Lock()
		ch.credit[f.payload[0]] += int(binary.BigEndian.Uint32(f.payload[1:]))
		ch.cond.Broadcast()
		ch.mu.Unlock()
	case kControl:
		var req controlRequest
		if json.Unmarshal(f.payload, &req) == nil {
			ch.mu.Lock()
			control := ch.control
			if control == nil && len(ch.pending) < maxPendingControls {
				ch.pending = append(ch.pending, req)
			}
			ch.mu.Unlock()
			if control != nil {
				control(req)
			}
		}
	case kCancel:
		ch.cancel()
	}
}

// setControl takes the channel's CONTROL frames from now on, those that came
// early first, in order (under the lock, so a frame arriving meanwhile waits).
func (ch *channel) setControl(fn func(controlRequest)) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.control = fn
	for _, req := range ch.pending {
		fn(req)
	}
	ch.pending = nil
}

// Read is stream 0: what the host sends, credited back as it is read.
func (ch *channel) Read(p []byte) (int, error) {
	ch.mu.Lock()
	for len(ch.in) == 0 && !ch.inEOF && ch.ctx.Err() == nil {
		ch.cond.Wait()
	}
	if ch.ctx.Err() != nil {
		ch.mu.Unlock()
		return 0, errCancelled
	}
	if len(ch.in) == 0 {
		ch.mu.Unlock()
		return 0, io.EOF
	}
	n := copy(p, ch.in)
	ch.in = ch.in[n:]
	if len(ch.in) == 0 {
		ch.in = nil
	}
	ch.mu.Unlock()
	if err := ch.s.send(ch.id, kWindow, windowPayload(streamIn, uint32(n))); err != nil {
		return n, err
	}
	return n, nil
}

// write sends p on an output stream as the host's credit allows.
func (ch *channel) write(stream byte, p []byte) error {
	for len(p) > 0 {
		ch.mu.Lock()
		for ch.credit[stream] <= 0 && ch.ctx.Err() == nil {
			ch.cond.Wait()
		}
		if ch.ctx.Err() != nil {
			ch.mu.Unlock()
			return errCancelled
		}
		n := len(p)
		if n > ch.credit[stream] {
			n = ch.credit[stream]
		}
		if n > dataChunk {
			n = dataChunk
		}
		ch.credit[stream] -= n
		ch.mu.Unlock()
		if err := ch.s.send(ch.id, kData, streamPayload(stream, p[:n])); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func (ch *channel) eof(stream byte) error {
	return ch.s.send(ch.id, kEOF, []byte{stream})
}

func (ch *channel) event(v any) error {
	return ch.s.sendJSON(ch.id, kEvent, v)
}

// writer is an io.Writer onto one output stream.
type writer struct {
	ch     *channel
	stream byte
}

func (w writer) Write(p []byte) (int, error) {
	if err := w.ch.write(w.stream, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// finish sends the channel's CLOSE and forgets it.
func (ch *channel) finish(result map[string]any, err error) {
	ch.mu.Lock()
	if ch.done {
		ch.mu.Unlock()
		return
	}
	ch.done = true
	ch.mu.Unlock()
	closing := map[string]any{"ok": err == nil}
	if err != nil {
		closing["error"] = err.Error()
		closing["errno"] = errnoOf(err)
	} else {
		for k, v := range result {
			closing[k] = v
		}
	}
	_ = ch.s.sendJSON(ch.id, kClose, closing)
	ch.s.mu.Lock()
	delete(ch.s.chans, ch.id)
	ch.s.mu.Unlock()
	ch.cancel()
	if ch.after != nil && err == nil {
		ch.after()
	}
}
