//! Captures in and out: the UDP datagrams of a pcap or pcapng file (as
//! tcpdump, dumpcap and tshark write them) or of frames read live from a
//! packet socket (one parser, [`frame_datagram`], for both), and a pcap of
//! rebuilt Ethernet/IP/UDP packets that Wireshark dissects and plays as RTP.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};

/// A capture that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// Neither pcap nor pcapng.
    #[error("not a pcap or pcapng file")]
    NotACapture,
    /// A file that stops or breaks in the middle.
    #[error("damaged after {packets} packets: {reason}")]
    Damaged {
        /// Packets read before the damage.
        packets: u64,
        /// What the reader said.
        reason: String,
    },
}

/// One UDP datagram of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Capture time since the epoch.
    pub time: Duration,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// What a capture held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    /// The UDP datagrams, in capture order.
    pub datagrams: Vec<Datagram>,
    /// Frames that are not UDP over IP (or of a link type not read).
    pub skipped: u64,
}

// Link types (https://www.tcpdump.org/linktypes.html).
const NULL: u32 = 0;
/// Ethernet (`LINKTYPE_ETHERNET`).
pub const ETHERNET: u32 = 1;
/// Raw IPv4 or IPv6, the version nibble first (`LINKTYPE_RAW`).
pub const RAW: u32 = 101;
const RAW_12: u32 = 12;
const LOOP: u32 = 108;
const SLL: u32 = 113;
const IPV4: u32 = 228;
const IPV6: u32 = 229;
const SLL2: u32 = 276;

/// The link type of the frames a Linux packet socket (`SOCK_RAW`) reads
/// on an interface of hardware type `hatype` (`ARPHRD_*`,
/// `<linux/if_arp.h>`): Ethernet framing for Ethernet and loopback (whose
/// frames carry zero MACs), bare IP for interfaces without a link header
/// (tun, WireGuard, raw-IP modems, PPP); `None` for any other.
pub fn link_of_hatype(hatype: u16) -> Option<u32> {
    const ARPHRD_ETHER: u16 = 1;
    const ARPHRD_PPP: u16 = 512;
    const ARPHRD_RAWIP: u16 = 519;
    const ARPHRD_LOOPBACK: u16 = 772;
    const ARPHRD_NONE: u16 = 0xfffe;
    match hatype {
        ARPHRD_ETHER | ARPHRD_LOOPBACK => Some(ETHERNET),
        ARPHRD_PPP | ARPHRD_RAWIP | ARPHRD_NONE => Some(RAW),
        _ => None,
    }
}

/// Read every UDP datagram of a pcap or pcapng capture.
pub fn read(bytes: &[u8]) -> Result<Capture, CaptureError> {
    match bytes.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => read_pcapng(bytes),
        Some(m)
            if [
                [0xd4, 0xc3, 0xb2, 0xa1],
                [0xa1, 0xb2, 0xc3, 0xd4],
                [0x4d, 0x3c, 0xb2, 0xa1],
                [0xa1, 0xb2, 0x3c, 0x4d],
            ]
            .iter()
            .any(|x| x == m) =>
        {
            read_pcap(bytes)
        }
        _ => Err(CaptureError::NotACapture),
    }
}

fn damaged(packets: u64, e: impl std::fmt::Display) -> CaptureError {
    CaptureError::Damaged {
        packets,
        reason: e.to_string(),
    }
}

fn read_pcap(bytes: &[u8]) -> Result<Capture, CaptureError> {
    let mut reader = PcapReader::new(bytes).map_err(|e| damaged(0, e))?;
    let link = u32::from(reader.header().datalink);
    let mut out = Capture::default();
    let mut n = 0;
    while let Some(p) = reader.next_packet() {
        let p = p.map_err(|e| damaged(n, e))?;
        n += 1;
        push(&mut out, link, p.timestamp, &p.data);
    }
    Ok(out)
}

fn read_pcapng(bytes: &[u8]) -> Result<Capture, CaptureError> {
    let mut reader = PcapNgReader::new(bytes).map_err(|e| damaged(0, e))?;
    let mut out = Capture::default();
    // Per interface: link type and units per second (if_tsresol; pcap-file
    // takes every timestamp as nanoseconds, the default is microseconds).
    let mut interfaces: Vec<(u32, u64)> = Vec::new();
    let mut n = 0;
    while let Some(block) = reader.next_block() {
        let block = block.map_err(|e| damaged(n, e))?;
        match block {
            Block::SectionHeader(_) => interfaces.clear(),
            Block::InterfaceDescription(idb) => {
                let mut units = 1_000_000u64;
                for o in &idb.options {
                    if let InterfaceDescriptionOption::IfTsResol(r) = o {
                        units = if r & 0x80 == 0 {
                            10u64.checked_pow(u32::from(*r)).unwrap_or(0)
                        } else {
                            1u64.checked_shl(u32::from(r & 0x7f)).unwrap_or(0)
                        };
                    }
                }
                interfaces.push((u32::from(idb.linktype), units.max(1)));
            }
            Block::EnhancedPacket(epb) => {
                n += 1;
                let Some(&(link, units)) = interfaces.get(epb.interface_id as usize) else {
                    out.skipped += 1;
                    continue;
                };
                let raw = epb.timestamp.as_nanos();
                let units = u128::from(units);
                let time = Duration::new(
                    u64::try_from(raw / units).unwrap_or(u64::MAX),
                    u32::try_from((raw % units) * 1_000_000_000 / units).unwrap_or(0),
                );
                push(&mut out, link, time, &epb.data);
            }
            Block::SimplePacket(spb) => {
                n += 1;
                match interfaces.first() {
                    Some(&(link, _)) => push(&mut out, link, Duration::ZERO, &spb.data),
                    None => out.skipped += 1,
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn push(out: &mut Capture, link: u32, time: Duration, frame: &[u8]) {
    match frame_datagram(link, time, frame) {
        Some(d) => out.datagrams.push(d),
        None => out.skipped += 1,
    }
}

/// The UDP datagram a frame of link type `link` carries (a capture file's
/// frame or one a packet socket read), stamped `time`; `None` for a frame
/// that is not UDP over IPv4 or IPv6, or of a link type not read.
pub fn frame_datagram(link: u32, time: Duration, frame: &[u8]) -> Option<Datagram> {
    let (src, dst, payload) = udp(link, frame)?;
    Some(Datagram {
        time,
        src,
        dst,
        payload: payload.to_vec(),
    })
}

/// The IP packet a frame of `link` carries (no VLAN tags under SLL).
fn ip_of(link: u32, frame: &[u8]) -> Option<SlicedPacket<'_>> {
    let ip_proto = |p: &[u8]| matches!(p, [0x08, 0x00] | [0x86, 0xdd]);
    match link {
        ETHERNET => SlicedPacket::from_ethernet(frame).ok(),
        RAW | RAW_12 | IPV4 | IPV6 => SlicedPacket::from_ip(frame).ok(),
        // A 4-octet address family (host order for NULL, network for
        // LOOP); the IP version nibble tells the rest.
        NULL | LOOP => SlicedPacket::from_ip(frame.get(4..)?).ok(),
        // Linux cooked v1: 16 octets, the protocol last.
        SLL if ip_proto(frame.get(14..16)?) => SlicedPacket::from_ip(frame.get(16..)?).ok(),
        // Linux cooked v2 (`-i any` since libpcap 1.10): 20 octets, the protocol first.
        SLL2 if ip_proto(frame.get(0..2)?) => SlicedPacket::from_ip(frame.get(20..)?).ok(),
        _ => None,
    }
}

fn udp(link: u32, frame: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    let sliced = ip_of(link, frame)?;
    let (s, d): (IpAddr, IpAddr) = match sliced.net.as_ref()? {
        NetSlice::Ipv4(v4) => (
            v4.header().source_addr().into(),
            v4.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(v6) => (
            v6.header().source_addr().into(),
            v6.header().destination_addr().into(),
        ),
        _ => return None,
    };
    match sliced.transport? {
        TransportSlice::Udp(u) => Some((
            SocketAddr::new(s, u.source_port()),
            SocketAddr::new(d, u.destination_port()),
            u.payload(),
        )),
        _ => None,
    }
}

/// A pcap (Ethernet link type) of UDP datagrams: IP and UDP headers are
/// rebuilt with the lengths and checksums of the payloads given.
pub fn write_pcap<'a>(datagrams: impl IntoIterator<Item = &'a Datagram>) -> Vec<u8> {
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut out = Vec::new();
    // Writing to a Vec fails only for a packet over 4 GiB.
    let Ok(mut writer) = PcapWriter::with_header(&mut out, header) else {
        return out;
    };
    let mut frame = Vec::new();
    for d in datagrams {
        frame.clear();
        let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let built = match (d.src.ip(), d.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(t)) => eth
                .ipv4(s.octets(), t.octets(), 64)
                .udp(d.src.port(), d.dst.port())
                .write(&mut frame, &d.payload),
            (s, t) => eth
                .ipv6(v6(s), v6(t), 64)
                .udp(d.src.port(), d.dst.port())
                .write(&mut frame, &d.payload),
        };
        if built.is_err() {
            continue;
        }
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let _ = writer.write_packet(&PcapPacket::new(d.time, len, &frame));
    }
    let _ = writer.into_writer();
    out
}

fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(1_700_000_000_000);

    fn eth_v4(payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2([0; 6], [0; 6])
            .ipv4([127, 0, 0, 2], [127, 0, 0, 3], 64)
            .udp(40000, 50000)
            .write(&mut f, payload)
            .unwrap();
        f
    }

    fn check(d: Option<Datagram>, src: &str, dst: &str, payload: &[u8]) {
        let d = d.expect("a datagram");
        assert_eq!(d.src, src.parse::<SocketAddr>().unwrap());
        assert_eq!(d.dst, dst.parse::<SocketAddr>().unwrap());
        assert_eq!(d.payload, payload);
        assert_eq!(d.time, T);
    }

    #[test]
    fn ethernet_and_loopback_frames_give_their_udp_datagram() {
        // Loopback's frames: Ethernet with zero MACs.
        let f = eth_v4(b"rtp");
        check(
            frame_datagram(ETHERNET, T, &f),
            "127.0.0.2:40000",
            "127.0.0.3:50000",
            b"rtp",
        );
        let link = link_of_hatype(772).unwrap();
        check(
            frame_datagram(link, T, &f),
            "127.0.0.2:40000",
            "127.0.0.3:50000",
            b"rtp",
        );
        // A VLAN tag (a mirror port that keeps it).
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .single_vlan(etherparse::VlanId::try_new(42).unwrap())
            .ipv4([192, 0, 2, 10], [198, 51, 100, 20], 64)
            .udp(1, 2)
            .write(&mut f, b"x")
            .unwrap();
        check(
            frame_datagram(ETHERNET, T, &f),
            "192.0.2.10:1",
            "198.51.100.20:2",
            b"x",
        );
    }

    #[test]
    fn raw_ip_and_cooked_frames_give_their_udp_datagram() {
        let mut v6 = Vec::new();
        PacketBuilder::ipv6(
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .udp(5004, 5006)
        .write(&mut v6, b"six")
        .unwrap();
        // tun/WireGuard (ARPHRD_NONE): bare IP.
        let link = link_of_hatype(0xfffe).unwrap();
        check(
            frame_datagram(link, T, &v6),
            "[2001:db8::1]:5004",
            "[2001:db8::2]:5006",
            b"six",
        );
        let ip = &eth_v4(b"c")[14..];
        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 2, 2, 2, 2, 2, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(ip);
        check(
            frame_datagram(SLL, T, &sll),
            "127.0.0.2:40000",
            "127.0.0.3:50000",
            b"c",
        );
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6];
        sll2.extend_from_slice(&[2; 8]);
        sll2.extend_from_slice(ip);
        check(
            frame_datagram(SLL2, T, &sll2),
            "127.0.0.2:40000",
            "127.0.0.3:50000",
            b"c",
        );
    }

    #[test]
    fn frames_not_udp_over_ip_give_nothing() {
        let mut tcp = Vec::new();
        PacketBuilder::ethernet2([0; 6], [0; 6])
            .ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
            .tcp(1, 2, 0, 1024)
            .write(&mut tcp, b"")
            .unwrap();
        assert_eq!(frame_datagram(ETHERNET, T, &tcp), None);
        let f = eth_v4(&[7; 100]);
        for cut in [0, 10, 14, 20, 33, 41] {
            assert_eq!(frame_datagram(ETHERNET, T, &f[..cut]), None, "{cut}");
        }
        // ARP.
        let mut arp = vec![0xff; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        assert_eq!(frame_datagram(ETHERNET, T, &arp), None);
        assert_eq!(frame_datagram(9999, T, &f), None);
        // Hardware types whose frames are not read (e.g. InfiniBand, 32).
        assert_eq!(link_of_hatype(32), None);
        assert_eq!(link_of_hatype(1), Some(ETHERNET));
        assert_eq!(link_of_hatype(519), Some(RAW));
    }
}
