package main

// The wire of banger/guest/proto.py, version 1. Every constant here must
// agree with that file, which is the protocol's specification.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

const (
	versionMin    = 1
	versionMax    = 1
	headerSize    = 10
	maxPayload    = 1 << 20
	initialWindow = 256 << 10
	// A virtio-serial write() moves at most 32 KiB as one buffer; a frame
	// that fits is never split by the host hanging up in the middle of it.
	dataChunk = 32<<10 - headerSize - 1
)

var syncMarker = []byte("\x00\x00\x00\x00BANGER-AGENT-SYNC\n")

type kind uint8

const (
	kHello kind = iota
	kOpen
	kData
	kEOF
	kWindow
	kControl
	kEvent
	kClose
	kCancel
	kError
)

const (
	streamIn  = 0
	streamOut = 1
	streamErr = 2
)

type frame struct {
	ch      uint32
	kind    kind
	payload []byte
}

// errFraming means the byte stream lost its frame boundaries: resync.
var errFraming = errors.New("framing error")

// errResync: a SYNC arrived where a frame was due. A host that reconnects
// faster than the agent sees the hang-up sends its SYNC mid-session; its
// first ten bytes read as a header no peer may send (kind 'E'), so this is
// never mistaken for a frame.
var errResync = errors.New("SYNC at a frame boundary")

func encodeFrame(ch uint32, k kind, payload []byte) []byte {
	buf := make([]byte, headerSize+len(payload))
	binary.BigEndian.PutUint32(buf[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(buf[4:8], ch)
	buf[8] = byte(k)
	copy(buf[headerSize:], payload)
	return buf
}

func jsonPayload(v any) []byte {
	out, err := json.Marshal(v)
	if err != nil {
		// Only our own maps go through here; a failure is a bug worth seeing.
		panic(err)
	}
	return out
}

// readFrame reads one frame; a header no version-1 peer would send is errFraming.
func readFrame(r *bufio.Reader) (frame, error) {
	var head [headerSize]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return frame{}, err
	}
	length := binary.BigEndian.Uint32(head[0:4])
	k := kind(head[8])
	if bytes.Equal(head[:], syncMarker[:headerSize]) {
		rest := make([]byte, len(syncMarker)-headerSize)
		if _, err := io.ReadFull(r, rest); err != nil {
			return frame{}, err
		}
		if bytes.Equal(rest, syncMarker[headerSize:]) {
			return frame{}, errResync
		}
		return frame{}, fmt.Errorf("%w: half a SYNC", errFraming)
	}
	if length > maxPayload || k > kError {
		return frame{}, fmt.Errorf("%w: length %d kind %d", errFraming, length, k)
	}
	payload := make([]byte, length)
	if _, err := io.ReadFull(r, payload); err != nil {
		return frame{}, err
	}
	return frame{ch: binary.BigEndian.Uint32(head[4:8]), kind: k, payload: payload}, nil
}

// awaitSync discards input up to and including the SYNC marker (a small
// Knuth-Morris-Pratt matcher: the marker starts with four zero bytes, which
// also begin many ordinary frames).
func awaitSync(r *bufio.Reader) error {
	fail := make([]int, len(syncMarker))
	for i, k := 1, 0; i < len(syncMarker); i++ {
		for k > 0 && syncMarker[i] != syncMarker[k] {
			k = fail[k-1]
		}
		if syncMarker[i] == syncMarker[k] {
			k++
		}
		fail[i] = k
	}
	matched := 0
	for {
		b, err := r.ReadByte()
		if err != nil {
			return err
		}
		for matched > 0 && b != syncMarker[matched] {
			matched = fail[matched-1]
		}
		if b == syncMarker[matched] {
			matched++
		}
		if matched == len(syncMarker) {
			return nil
		}
	}
}

func streamPayload(stream byte, data []byte) []byte {
	out := make([]byte, 1+len(data))
	out[0] = stream
	copy(out[1:], data)
	return out
}

func windowPayload(stream byte, increment uint32) []byte {
	out := make([]byte, 5)
	out[0] = stream
	binary.BigEndian.PutUint32(out[1:], increment)
	return out
}
