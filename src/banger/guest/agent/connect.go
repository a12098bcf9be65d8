package main

// connect: a TCP connection made inside the guest, its bytes carried on the
// channel's streams (0 towards the guest's server, 1 back). It is how the
// host reaches a server bound to the guest's loopback, which no packet from
// the bridge can. Only the guest's own addresses are reachable this way:
// the channel must not turn into a proxy onto the guest's networks.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"
)

const connectTimeout = 5 * time.Second

type connectRequest struct {
	Port int    `json:"port"`
	Host string `json:"host"`
}

func opConnect(ch *channel, raw []byte) (map[string]any, error) {
	req := connectRequest{Host: "127.0.0.1"}
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, badRequest("connect: " + err.Error())
	}
	if req.Port < 1 || req.Port > 65535 {
		return nil, badRequest(fmt.Sprintf("connect needs a port from 1 to 65535, not %d", req.Port))
	}
	ip := net.ParseIP(req.Host)
	if ip == nil {
		return nil, badRequest("connect needs an IP address as host, not " + strconv.Quote(req.Host))
	}
	if !ownAddress(ip) {
		return nil, &opError{
			msg:   "connect reaches only the guest's loopback and its own addresses, not " + req.Host,
			errno: "EPERM",
		}
	}
	where := net.JoinHostPort(ip.String(), strconv.Itoa(req.Port))
	dialer := net.Dialer{Timeout: connectTimeout}
	c, err := dialer.DialContext(ch.ctx, "tcp", where)
	if err != nil {
		return nil, dialError(where, err)
	}
	tc := c.(*net.TCPConn)
	defer tc.Close()
	go func() {
		// A CANCEL, or the end of the session, drops the connection.
		<-ch.ctx.Done()
		tc.Close()
	}()
	if err := ch.event(map[string]any{"connected": map[string]any{
		"local": tc.LocalAddr().String(), "remote": where,
	}}); err != nil {
		return nil, err
	}
	return relay(ch, tc, where)
}

// relay copies both ways; each direction's end is passed on as a half-close.
func relay(ch *channel, tc *net.TCPConn, where string) (map[string]any, error) {
	type copied struct {
		n   int64
		err error
	}
	up := make(chan copied, 1)
	go func() {
		n, err := io.CopyBuffer(tc, ch, make([]byte, dataChunk))
		if err == nil {
			// The server may have closed already; its end is not the host's error.
			_ = tc.CloseWrite()
		}
		up <- copied{n, err}
	}()
	received, err := io.CopyBuffer(writer{ch, streamOut}, tc, make([]byte, dataChunk))
	if err == nil {
		err = ch.eof(streamOut)
	}
	if err != nil {
		// The host's direction is abandoned: CLOSE cancels the channel, which ends it.
		return nil, streamError(where, err)
	}
	sent := <-up
	if sent.err != nil {
		return nil, streamError(where, sent.err)
	}
	return map[string]any{"sent": sent.n, "received": received}, nil
}

func dialError(where string, err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return &opError{msg: "nothing listens on " + where + " in the guest", errno: "ECONNREFUSED"}
	case errors.Is(err, context.Canceled):
		return errCancelled
	}
	var timeout net.Error
	if errors.As(err, &timeout) && timeout.Timeout() {
		return &opError{msg: "connecting to " + where + " in the guest timed out", errno: "ETIMEDOUT"}
	}
	return &opError{msg: "connecting to " + where + ": " + err.Error(), errno: errnoOf(err)}
}

func streamError(where string, err error) error {
	if errors.Is(err, errCancelled) || errors.Is(err, errGone) {
		return err
	}
	if errors.Is(err, net.ErrClosed) {
		return errCancelled // closed by the watcher above: the host cancelled
	}
	return &opError{msg: "the connection to " + where + ": " + err.Error(), errno: errnoOf(err)}
}

// ownAddress: loopback, or an address one of the guest's interfaces holds.
func ownAddress(ip net.IP) bool {
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, addr := range addrs {
		if ipnet, ok := addr.(*net.IPNet); ok && ipnet.IP.Equal(ip) {
			return true
		}
	}
	return false
}
