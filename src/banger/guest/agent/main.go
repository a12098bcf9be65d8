// banger-agent: banger's guest agent, the guest half of
// banger/guest/proto.py. In a guest it serves the virtio-serial port named
// banger.agent and a vsock port, whichever exist; on a host (tests) a unix
// socket.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

type handler func(ch *channel, raw []byte) (map[string]any, error)

var ops = map[string]handler{
	"exec": opExec, "read": opRead, "write": opWrite, "stat": opStat, "list": opList,
	"tar_get": opTarGet, "tar_put": opTarPut, "identity": opIdentity, "clock": opClock,
	"entropy": opEntropy, "ports": opPorts, "load": opLoad, "boot": opBoot,
	"poweroff": opPoweroff, "connect": opConnect,
}

const usage = `banger-agent: banger's guest agent. It runs inside a banger VM (started by
/.banger/agent at boot) and serves bangerd's requests (commands, files, tar
streams, identity, clock, ports) over the VM's host channel.

  banger-agent --serial auto --vsock 1024   what the guest runs
  banger-agent --listen unix:/tmp/a.sock    on a host, for tests (ops that
                                            change the machine are refused)
`

func main() {
	serial := flag.String("serial", "", "virtio-serial port: auto (the one named banger.agent) or a /dev path")
	vsock := flag.Uint("vsock", 0, "listen on this AF_VSOCK port (0: no vsock)")
	listen := flag.String("listen", "", "listen on unix:PATH (tests on a host)")
	device := flag.String("device", "", "the network device identity configures (default eth0; "+
		"on a host, with --listen, only a device named here is configured)")
	flag.Usage = func() {
		fmt.Fprint(os.Stderr, usage)
		flag.PrintDefaults()
	}
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("banger-agent: ")
	// agent.sh starts this in the background of a non-interactive shell, which
	// starts it with SIGINT and SIGQUIT ignored; the commands it runs would
	// inherit that, and a non-interactive shell cannot trap a signal ignored
	// on entry: a Ctrl-C forwarded from the host would do nothing. Catching
	// them (and dropping them) replaces the ignore, and exec gives every child
	// the default disposition of a caught signal.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGINT, syscall.SIGQUIT)

	a := &agent{guest: *listen == "", device: *device}
	up := []string{}
	if *serial != "" {
		path := *serial
		var err error
		if path == "auto" {
			path, err = findSerialPort()
		}
		var c *serialConn
		if err == nil {
			c, err = openSerial(path)
		}
		if err != nil {
			log.Printf("serial: %v", err)
		} else {
			up = append(up, c.String())
			go serveSerial(a, c)
		}
	}
	if *vsock != 0 {
		fd, err := listenVsock(uint32(*vsock))
		if err != nil {
			log.Printf("vsock port %d: %v", *vsock, err)
		} else {
			up = append(up, fmt.Sprintf("vsock port %d", *vsock))
			go serveVsock(a, fd, uint32(*vsock))
		}
	}
	if *listen != "" {
		path := strings.TrimPrefix(*listen, "unix:")
		if path == *listen {
			log.Fatalf("--listen takes unix:PATH, not %s", *listen)
		}
		ln, err := listenUnix(path)
		if err != nil {
			log.Fatalf("%v", err)
		}
		up = append(up, "unix "+path)
		go serveUnix(a, ln)
	}
	if len(up) == 0 {
		log.Fatalf("no channel to the host (no virtio-serial port named %s, no vsock)", serialPortName)
	}
	// The host waits for this exact line on the console.
	fmt.Println("banger-agent: channel up")
	log.Printf("serving %s", strings.Join(up, ", "))
	select {}
}
