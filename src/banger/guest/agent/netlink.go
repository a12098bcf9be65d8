package main

// The guest's network identity (MAC, address, default route) set through
// rtnetlink, and the unsolicited ARP that tells the host about it sent from
// an AF_PACKET socket. A restored guest used to exec busybox for each of
// these: seven `ip` processes and an `arping`, about 50 ms each under
// emulation, on the path of every restore.

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"
	"unsafe"
)

type rtnl struct {
	fd  int
	seq uint32
}

func openRtnl() (*rtnl, error) {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC,
		syscall.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return &rtnl{fd: fd}, nil
}

func (c *rtnl) close() { syscall.Close(c.fd) }

// native writes the host-order integers netlink headers are made of.
var native binary.ByteOrder = func() binary.ByteOrder {
	one := uint16(1)
	if *(*byte)(unsafe.Pointer(&one)) == 1 {
		return binary.LittleEndian
	}
	return binary.BigEndian
}()

func rtattr(kind uint16, data []byte) []byte {
	size := syscall.SizeofRtAttr + len(data)
	b := make([]byte, (size+3)&^3)
	native.PutUint16(b[0:], uint16(size))
	native.PutUint16(b[2:], kind)
	copy(b[syscall.SizeofRtAttr:], data)
	return b
}

// do sends one request and waits for its acknowledgement: nil, or the errno.
func (c *rtnl) do(kind, flags uint16, body ...[]byte) error {
	c.seq++
	size := syscall.NLMSG_HDRLEN
	for _, part := range body {
		size += len(part)
	}
	msg := make([]byte, syscall.NLMSG_HDRLEN, size)
	native.PutUint32(msg[0:], uint32(size))
	native.PutUint16(msg[4:], kind)
	native.PutUint16(msg[6:], syscall.NLM_F_REQUEST|syscall.NLM_F_ACK|flags)
	native.PutUint32(msg[8:], c.seq)
	for _, part := range body {
		msg = append(msg, part...)
	}
	if err := syscall.Sendto(c.fd, msg, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := syscall.Recvfrom(c.fd, buf, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		replies, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, reply := range replies {
			if reply.Header.Seq != c.seq || reply.Header.Type != syscall.NLMSG_ERROR {
				continue
			}
			if len(reply.Data) < 4 {
				return syscall.EIO
			}
			if code := int32(native.Uint32(reply.Data)); code != 0 {
				return syscall.Errno(-code)
			}
			return nil
		}
	}
}

func ifinfo(index int, flags, change uint32) []byte {
	b := make([]byte, syscall.SizeofIfInfomsg)
	b[0] = syscall.AF_UNSPEC
	native.PutUint32(b[4:], uint32(index))
	native.PutUint32(b[8:], flags)
	native.PutUint32(b[12:], change)
	return b
}

// setMAC changes the address of a running link where the driver can
// (virtio-net can), else with the link down for the change.
func (c *rtnl) setMAC(index int, mac net.HardwareAddr) error {
	err := c.do(syscall.RTM_NEWLINK, 0, ifinfo(index, 0, 0), rtattr(syscall.IFLA_ADDRESS, mac))
	if !errors.Is(err, syscall.EBUSY) {
		return err
	}
	if err := c.do(syscall.RTM_NEWLINK, 0, ifinfo(index, 0, syscall.IFF_UP)); err != nil {
		return err
	}
	if err := c.do(syscall.RTM_NEWLINK, 0, ifinfo(index, 0, 0),
		rtattr(syscall.IFLA_ADDRESS, mac)); err != nil {
		return err
	}
	return c.linkUp(index)
}

func (c *rtnl) linkUp(index int) error {
	return c.do(syscall.RTM_NEWLINK, 0, ifinfo(index, syscall.IFF_UP, syscall.IFF_UP))
}

func ifaddr(index int, prefix int) []byte {
	b := make([]byte, syscall.SizeofIfAddrmsg)
	b[0] = syscall.AF_INET
	b[1] = byte(prefix)
	native.PutUint32(b[4:], uint32(index))
	return b
}

// setAddress makes ip/prefix the link's only IPv4 address.
func (c *rtnl) setAddress(index int, ip net.IP, prefix int) error {
	rib, err := syscall.NetlinkRIB(syscall.RTM_GETADDR, syscall.AF_INET)
	if err != nil {
		return err
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return err
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != syscall.RTM_NEWADDR || len(m.Data) < syscall.SizeofIfAddrmsg {
			continue
		}
		have := (*syscall.IfAddrmsg)(unsafe.Pointer(&m.Data[0]))
		if int(have.Index) != index || have.Family != syscall.AF_INET {
			continue
		}
		attrs, _ := syscall.ParseNetlinkRouteAttr(m)
		for _, a := range attrs {
			if a.Attr.Type != syscall.IFA_LOCAL {
				continue
			}
			err := c.do(syscall.RTM_DELADDR, 0, ifaddr(index, int(have.Prefixlen)),
				rtattr(syscall.IFA_LOCAL, a.Value))
			// Removing a primary address takes its secondaries with it.
			if err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
				return err
			}
		}
	}
	four := ip.To4()
	return c.do(syscall.RTM_NEWADDR, syscall.NLM_F_CREATE|syscall.NLM_F_EXCL, ifaddr(index, prefix),
		rtattr(syscall.IFA_LOCAL, four), rtattr(syscall.IFA_ADDRESS, four))
}

// setGateway is `ip route replace default via GW dev DEV`.
func (c *rtnl) setGateway(index int, gateway net.IP) error {
	const tableMain, protoBoot, scopeUniverse = 254, 3, 0
	rt := make([]byte, syscall.SizeofRtMsg)
	rt[0] = syscall.AF_INET
	rt[4], rt[5], rt[6], rt[7] = tableMain, protoBoot, scopeUniverse, syscall.RTN_UNICAST
	oif := make([]byte, 4)
	native.PutUint32(oif, uint32(index))
	return c.do(syscall.RTM_NEWROUTE, syscall.NLM_F_CREATE|syscall.NLM_F_REPLACE, rt,
		rtattr(syscall.RTA_GATEWAY, gateway.To4()), rtattr(syscall.RTA_OIF, oif))
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// announceARP broadcasts an unsolicited ARP request for ip at mac (what
// `arping -U` sends): the host's neighbour table may still map the address
// to the MAC of the VM that held it before, which would cost the first
// connection seconds of ARP retries.
func announceARP(index int, mac net.HardwareAddr, ip net.IP) error {
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC,
		int(htons(syscall.ETH_P_ARP)))
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	four := ip.To4()
	packet := make([]byte, 28)
	binary.BigEndian.PutUint16(packet[0:], 1) // Ethernet
	binary.BigEndian.PutUint16(packet[2:], syscall.ETH_P_IP)
	packet[4], packet[5] = 6, 4
	binary.BigEndian.PutUint16(packet[6:], 1) // request
	copy(packet[8:], mac)
	copy(packet[14:], four)
	copy(packet[24:], four) // the target is the sender: who-has is its own answer
	to := &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ARP), Ifindex: index, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	return syscall.Sendto(fd, packet, 0, to)
}
