package main

// What /proc says: processes, listening TCP sockets, load.

import (
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

func processes() []int {
	entries, _ := os.ReadDir("/proc")
	pids := []int{}
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func comm(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// initName is what runs as PID 1: "agent" (banger's), "systemd", or its
// command name. systemd is known by its program (/proc/1/exe), since its
// command name is the one it was exec'd by ("init", from /sbin/init).
func initName() string {
	name := comm(1)
	if name == "agent" {
		return name
	}
	if target, err := os.Readlink("/proc/1/exe"); err == nil && filepath.Base(target) == "systemd" {
		return "systemd"
	}
	return name
}

func parentOf(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name in parentheses may hold spaces; fields follow the last ')'.
	text := string(data)
	fields := strings.Fields(text[strings.LastIndexByte(text, ')')+1:])
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

type listener struct {
	proto, addr string
	port        int
	inode       string
}

// decodeAddr reads /proc/net/tcp's ADDR:PORT, the address in 32-bit words of host order.
func decodeAddr(field string) (string, int, bool) {
	parts := strings.SplitN(field, ":", 2)
	if len(parts) != 2 {
		return "", 0, false
	}
	raw, err := hex.DecodeString(parts[0])
	port, perr := strconv.ParseUint(parts[1], 16, 16)
	if err != nil || perr != nil || (len(raw) != 4 && len(raw) != 16) {
		return "", 0, false
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	return net.IP(raw).String(), int(port), true
}

func listeners() []listener {
	out := []listener{}
	for _, proto := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile("/proc/net/" + proto)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 10 || fields[3] != "0A" {
				continue
			}
			addr, port, ok := decodeAddr(fields[1])
			if ok {
				out = append(out, listener{proto: proto, addr: addr, port: port, inode: fields[9]})
			}
		}
	}
	return out
}

// socketOwners maps socket inodes to a pid holding them; one pass over /proc/*/fd.
func socketOwners(wanted map[string]bool) map[string]int {
	owners := map[string]int{}
	for _, pid := range processes() {
		dir := "/proc/" + strconv.Itoa(pid) + "/fd"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err != nil || !strings.HasPrefix(target, "socket:[") {
				continue
			}
			inode := strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")
			if _, seen := owners[inode]; wanted[inode] && !seen {
				owners[inode] = pid
			}
		}
		if len(owners) == len(wanted) {
			break
		}
	}
	return owners
}

func opPorts(ch *channel, raw []byte) (map[string]any, error) {
	found := listeners()
	wanted := map[string]bool{}
	for _, l := range found {
		wanted[l.inode] = true
	}
	owners := socketOwners(wanted)
	sort.Slice(found, func(i, j int) bool {
		if found[i].port != found[j].port {
			return found[i].port < found[j].port
		}
		return found[i].proto+found[i].addr < found[j].proto+found[j].addr
	})
	ports := make([]map[string]any, 0, len(found))
	for _, l := range found {
		entry := map[string]any{"proto": l.proto, "addr": l.addr, "port": l.port}
		if pid, ok := owners[l.inode]; ok {
			entry["pid"] = pid
			entry["process"] = comm(pid)
		}
		ports = append(ports, entry)
	}
	return map[string]any{"ports": ports}, nil
}

func opLoad(ch *channel, raw []byte) (map[string]any, error) {
	out := map[string]any{}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		fields := strings.Fields(string(data))
		if len(fields) >= 4 {
			loads := make([]float64, 3)
			for i := range loads {
				loads[i], _ = strconv.ParseFloat(fields[i], 64)
			}
			out["loadavg"] = loads
			if slash := strings.IndexByte(fields[3], '/'); slash >= 0 {
				out["procs"], _ = strconv.Atoi(fields[3][slash+1:])
			}
		}
	}
	if data, err := os.ReadFile("/proc/uptime"); err == nil {
		if fields := strings.Fields(string(data)); len(fields) > 0 {
			out["uptime"], _ = strconv.ParseFloat(fields[0], 64)
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 2 {
				continue
			}
			value, _ := strconv.Atoi(fields[1])
			switch fields[0] {
			case "MemTotal:":
				out["mem_total_kib"] = value
			case "MemAvailable:":
				out["mem_available_kib"] = value
			}
		}
	}
	return out, nil
}
