package main

// Control ops: identity, clock, entropy (after a snapshot restore), and
// what the host shows the user: listening ports, load, boot state.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	bangerDir  = "/.banger"
	busybox    = bangerDir + "/bin/busybox"
	hostKey    = "/etc/ssh/ssh_host_ed25519_key"
	agentState = "/run/banger/agent"
)

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$`)

// refuseOnHost: ops that change the machine only run in a guest.
func refuseOnHost(ch *channel, op string) error {
	if ch.s.a.guest {
		return nil
	}
	return &opError{msg: op + " changes the machine; this agent listens on a unix socket " +
		"(a test on the host), where it is refused", errno: "EPERM"}
}

type identityRequest struct {
	Hostname string `json:"hostname"`
	IP       string `json:"ip"`
	Gateway  string `json:"gateway"`
	MAC      string `json:"mac"`
	HostKey  *struct {
		Private string `json:"private"`
		Public  string `json:"public"`
	} `json:"host_key"`
}

func (req *identityRequest) check() error {
	if req.Hostname != "" && !hostnameRE.MatchString(req.Hostname) {
		return badRequest("identity: bad hostname " + strconv.Quote(req.Hostname))
	}
	if req.IP != "" {
		if _, _, err := net.ParseCIDR(req.IP); err != nil {
			return badRequest("identity: ip must be a.b.c.d/n, not " + strconv.Quote(req.IP))
		}
	}
	if req.Gateway != "" && net.ParseIP(req.Gateway) == nil {
		return badRequest("identity: bad gateway " + strconv.Quote(req.Gateway))
	}
	if req.MAC != "" {
		if _, err := net.ParseMAC(req.MAC); err != nil {
			return badRequest("identity: bad mac " + strconv.Quote(req.MAC))
		}
	}
	if req.HostKey != nil && (req.HostKey.Private == "" || req.HostKey.Public == "") {
		return badRequest("identity: host_key needs private and public")
	}
	return nil
}

func opIdentity(ch *channel, raw []byte) (map[string]any, error) {
	var req identityRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, badRequest("identity: " + err.Error())
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	if err := refuseIdentityOnHost(ch, &req); err != nil {
		return nil, err
	}
	// The three parts touch different things (the UTS name and /etc, the
	// network device, /etc/ssh and the SSH server): run side by side, the
	// op takes as long as the slowest under emulation, not their sum.
	var mu sync.Mutex
	var wg sync.WaitGroup
	took := map[string]int64{}
	errs := map[string]error{}
	changed := []string{}
	announced := false
	part := func(what string, step func() ([]string, error)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			began := time.Now()
			did, err := step()
			mu.Lock()
			defer mu.Unlock()
			took[what] = time.Since(began).Milliseconds()
			errs[what] = err
			if err == nil {
				changed = append(changed, did...)
			}
		}()
	}
	if req.Hostname != "" {
		part("hostname", func() ([]string, error) {
			return []string{"hostname"}, setHostname(req.Hostname)
		})
	}
	if req.MAC != "" || req.IP != "" || req.Gateway != "" {
		part("network", func() (did []string, err error) {
			did, announced, err = setNetwork(ch.s.a.networkDevice(), &req)
			return did, err
		})
	}
	if req.HostKey != nil {
		part("host_key", func() ([]string, error) {
			return []string{"host_key"}, installHostKey(req.HostKey.Private, req.HostKey.Public)
		})
	}
	wg.Wait()
	for _, what := range []string{"hostname", "network", "host_key"} {
		if errs[what] != nil {
			return nil, errs[what]
		}
	}
	sort.Strings(changed)
	return map[string]any{"changed": changed, "announced": announced, "took_ms": took}, nil
}

// refuseIdentityOnHost: on a host (tests) only the network part is taken,
// and only on a device named with --device (the tests run the agent in a
// network namespace of their own, with a veth pair).
func refuseIdentityOnHost(ch *channel, req *identityRequest) error {
	if ch.s.a.guest || (ch.s.a.device != "" && req.Hostname == "" && req.HostKey == nil) {
		return nil
	}
	return refuseOnHost(ch, "identity")
}

// setNetwork gives the device its MAC, address and default route, then
// announces the address; what changed, and whether the ARP went out.
func setNetwork(device string, req *identityRequest) ([]string, bool, error) {
	link, err := net.InterfaceByName(device)
	if err != nil {
		return nil, false, &opError{msg: "identity: no network device " + device, errno: "ENODEV"}
	}
	c, err := openRtnl()
	if err != nil {
		return nil, false, &opError{msg: "netlink: " + err.Error(), errno: errnoOf(err)}
	}
	defer c.close()
	fail := func(what string, err error) ([]string, bool, error) {
		return nil, false, &opError{msg: "identity: " + what + " of " + device + ": " + err.Error(),
			errno: errnoOf(err)}
	}
	changed := []string{}
	mac := link.HardwareAddr
	if req.MAC != "" {
		mac, _ = net.ParseMAC(req.MAC)
		if err := c.setMAC(link.Index, mac); err != nil {
			return fail("setting the MAC", err)
		}
		changed = append(changed, "mac")
	}
	var ip net.IP
	if req.IP != "" {
		var network *net.IPNet
		ip, network, _ = net.ParseCIDR(req.IP)
		prefix, _ := network.Mask.Size()
		if err := c.setAddress(link.Index, ip, prefix); err != nil {
			return fail("setting the address", err)
		}
		if err := c.linkUp(link.Index); err != nil {
			return fail("bringing up", err)
		}
		changed = append(changed, "ip")
	}
	if req.Gateway != "" {
		if err := c.setGateway(link.Index, net.ParseIP(req.Gateway)); err != nil {
			return fail("setting the default route", err)
		}
		changed = append(changed, "gateway")
	}
	announced := false
	if ip != nil && len(mac) == 6 {
		if err := announceARP(link.Index, mac, ip); err != nil {
			log.Printf("identity: no unsolicited ARP on %s: %v", device, err)
		} else {
			announced = true
		}
	}
	return changed, announced, nil
}

func setHostname(name string) error {
	if err := syscall.Sethostname([]byte(name)); err != nil {
		return &opError{msg: "sethostname: " + err.Error(), errno: errnoOf(err)}
	}
	if err := writeAtomic("/etc/hostname", []byte(name+"\n"), 0o644); err != nil {
		return err
	}
	hosts, _ := os.ReadFile("/etc/hosts")
	lines := []string{}
	for _, line := range strings.Split(strings.TrimRight(string(hosts), "\n"), "\n") {
		if line != "" && !strings.HasPrefix(line, "127.0.1.1") {
			lines = append(lines, line)
		}
	}
	lines = append(lines, "127.0.1.1 "+name)
	return writeAtomic("/etc/hosts", []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".banger-new"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fileError(err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fileError(err)
	}
	return fileError(os.Rename(tmp, path))
}

// installHostKey writes the key and makes the running SSH server use it.
// OpenSSH before 9.8 re-executes itself for every connection, and that
// process reads the host keys from disk: the files are all it takes (a
// SIGHUP would make the listener re-execute too, costing a restored guest
// under emulation a few hundred milliseconds of its only vCPU). From 9.8 the
// listener keeps the keys for its sshd-session children: it is told with a
// SIGHUP. dropbear (banger's own) takes its key converted and is restarted.
func installHostKey(private, public string) error {
	if err := os.MkdirAll(filepath.Dir(hostKey), 0o755); err != nil {
		return fileError(err)
	}
	if err := writeAtomic(hostKey, []byte(private), 0o600); err != nil {
		return err
	}
	if err := writeAtomic(hostKey+".pub", []byte(public), 0o644); err != nil {
		return err
	}
	if sshdKeepsKeys() {
		for _, pid := range processes() {
			if comm(pid) == "sshd" && comm(parentOf(pid)) != "sshd" {
				_ = syscall.Kill(pid, syscall.SIGHUP)
			}
		}
	}
	pidText, err := os.ReadFile(agentState + "/dropbear.pid")
	if err != nil {
		return nil // banger's dropbear is not running here
	}
	return restartDropbear(strings.TrimSpace(string(pidText)))
}

// Where distributions put OpenSSH's per-session binary (9.8 and later).
var sshdSession = []string{
	"/usr/lib/openssh/sshd-session", "/usr/libexec/openssh/sshd-session",
	"/usr/libexec/sshd-session", "/usr/lib/ssh/sshd-session",
}

// sshdKeepsKeys: whether the installed OpenSSH hands its listener's host
// keys to each session rather than reading them again per connection.
func sshdKeepsKeys() bool {
	for _, path := range sshdSession {
		if _, err := os.Stat(path); err == nil {
			return true
		}
	}
	return false
}

func restartDropbear(pidText string) error {
	converted := agentState + "/host_key"
	env := []string{"LD_LIBRARY_PATH=" + bangerDir + "/lib"}
	convert := exec.Command(bangerDir+"/bin/dropbearconvert", "openssh", "dropbear", hostKey, converted+".new")
	convert.Env = env
	if out, err := convert.CombinedOutput(); err != nil {
		return &opError{msg: "dropbearconvert: " + strings.TrimSpace(string(out)), errno: "EIO"}
	}
	if err := os.Rename(converted+".new", converted); err != nil {
		return fileError(err)
	}
	if pid, err := strconv.Atoi(pidText); err == nil && comm(pid) == "dropbear" {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	if comm(1) == "agent" {
		return nil // banger's init restarts dropbear when it exits
	}
	time.Sleep(200 * time.Millisecond) // the old listener lets go of port 22
	server := exec.Command(bangerDir+"/bin/dropbear", "-F", "-E", "-s", "-p", "22",
		"-r", converted, "-P", agentState+"/dropbear.pid")
	server.Env = env
	server.Stdout, server.Stderr = os.Stdout, os.Stderr
	server.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := server.Start(); err != nil {
		return &opError{msg: "dropbear: " + err.Error(), errno: errnoOf(err)}
	}
	go func() { _ = server.Wait() }()
	return nil
}

func opClock(ch *channel, raw []byte) (map[string]any, error) {
	var req struct {
		UnixNs *int64 `json:"unix_ns"`
	}
	if err := json.Unmarshal(raw, &req); err != nil || req.UnixNs == nil {
		return nil, badRequest("clock needs {\"unix_ns\": N}")
	}
	if err := refuseOnHost(ch, "clock"); err != nil {
		return nil, err
	}
	if err := setClock(*req.UnixNs); err != nil {
		return nil, &opError{msg: "clock_settime: " + err.Error(), errno: errnoOf(err)}
	}
	return map[string]any{}, nil
}

func opEntropy(ch *channel, raw []byte) (map[string]any, error) {
	var req struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, badRequest("entropy: " + err.Error())
	}
	data, err := base64.StdEncoding.DecodeString(req.Data)
	if err != nil || len(data) == 0 {
		return nil, badRequest("entropy needs {\"data\": BASE64} with at least one byte")
	}
	if err := addEntropy(data); err != nil {
		return nil, &opError{msg: "RNDADDENTROPY: " + err.Error(), errno: errnoOf(err)}
	}
	// A kernel older than 4.17 has no reseed ioctl: said, not an error, since
	// the entropy is in the pool all the same.
	reseeded := reseedCRNG() == nil
	return map[string]any{"bytes": len(data), "reseeded": reseeded}, nil
}

func opBoot(ch *channel, raw []byte) (map[string]any, error) {
	var req struct {
		Wait float64 `json:"wait"`
	}
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, badRequest("boot: " + err.Error())
	}
	init := initName()
	if init != "systemd" {
		if init == "agent" {
			return map[string]any{"init": "agent", "state": "running"}, nil
		}
		// An init banger cannot ask: it runs, and that is all that is known.
		return map[string]any{"init": init, "state": "running"}, nil
	}
	deadline := time.Now().Add(time.Duration(req.Wait * float64(time.Second)))
	for {
		state := systemdState(ch.ctx)
		if state == "running" || state == "degraded" || !time.Now().Before(deadline) {
			return map[string]any{"init": "systemd", "state": state}, nil
		}
		select {
		case <-ch.ctx.Done():
			return nil, errCancelled
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func systemdState(ctx context.Context) string {
	// Non-zero exit for every state but running; the state is on stdout.
	out, _ := exec.CommandContext(ctx, "systemctl", "is-system-running").Output()
	state := strings.TrimSpace(string(out))
	if state == "" {
		return "starting"
	}
	return state
}

func opPoweroff(ch *channel, raw []byte) (map[string]any, error) {
	if err := refuseOnHost(ch, "poweroff"); err != nil {
		return nil, err
	}
	ch.after = powerOff
	return map[string]any{}, nil
}

// powerOff asks whichever init runs to power off, in its own language, as
// `/.banger/agent poweroff` does. systemd takes SIGRTMIN+4 even before its
// control socket exists.
func powerOff() {
	syscall.Sync()
	switch initName() {
	case "agent":
		_ = syscall.Kill(1, syscall.SIGUSR2)
	case "systemd":
		if exec.Command("systemctl", "poweroff").Run() != nil {
			_ = syscall.Kill(1, syscall.Signal(38))
		}
	default:
		if exec.Command("poweroff").Run() != nil {
			_ = exec.Command(busybox, "poweroff").Run()
		}
	}
}
