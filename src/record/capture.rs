//! Captures in and out: the UDP datagrams of a pcap or pcapng file (as
//! tcpdump, dumpcap and tshark write them), and a pcap of rebuilt
//! Ethernet/IP/UDP packets that Wireshark dissects and plays as RTP.

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
const ETHERNET: u32 = 1;
const RAW: u32 = 101;
const RAW_12: u32 = 12;
const LOOP: u32 = 108;
const SLL: u32 = 113;
const IPV4: u32 = 228;
const IPV6: u32 = 229;
const SLL2: u32 = 276;

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
    match udp(link, frame) {
        Some((src, dst, payload)) => out.datagrams.push(Datagram {
            time,
            src,
            dst,
            payload: payload.to_vec(),
        }),
        None => out.skipped += 1,
    }
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
