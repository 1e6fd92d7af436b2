//! A Linux packet socket (`AF_PACKET`, packet(7)) on one interface: the
//! frames copied to a recorder (nftables `dup to`, a mirror port) as the
//! interface carries them, for `sipseal record --interface`. It reads
//! frames and knows nothing of what they hold.
//!
//! The socket is `SOCK_RAW` for every protocol (`ETH_P_ALL`), so a frame
//! comes with its link header, of the type the interface's hardware type
//! says. It is not bound to the interface (binding takes a `sockaddr_ll`,
//! which safe Rust cannot build); a classic BPF filter
//! (`SO_ATTACH_FILTER`) passes only the interface's frames, and the same
//! test is made again on each frame read, for those queued before the
//! filter was attached. On loopback every packet passes twice, going out
//! (`PACKET_OUTGOING`) and coming in; only the second is read. Elsewhere a
//! frame going out is read too: a copy that nftables `dup to ... device`
//! sends out of a local interface is one.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::net::if_::InterfaceFlags;
use nix::sys::socket::{
    AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType, recvfrom, setsockopt, socket,
    sockopt,
};
use socket2::{SockFilter, SockRef};

/// Why a packet socket cannot be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// No interface of that name.
    #[error("no network interface {0:?}")]
    NoSuchInterface(String),
    /// Opening a packet socket is a privilege.
    #[error("a packet socket on {0} needs root or CAP_NET_RAW")]
    Permission(String),
    /// Anything else the system said.
    #[error("packet socket on {interface}: {source}")]
    Io {
        /// The interface.
        interface: String,
        /// What the system said.
        source: std::io::Error,
    },
}

/// `PACKET_OUTGOING` (`<linux/if_packet.h>`): a frame the host sent.
const PACKET_OUTGOING: u8 = 4;

/// Frames read from one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    interface: String,
    ifindex: usize,
    loopback: bool,
}

/// One frame read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Its length in the buffer given to [`PacketSocket::recv`].
    pub len: usize,
    /// The interface's hardware type (`ARPHRD_*`, `<linux/if_arp.h>`):
    /// what link header the frame starts with.
    pub hatype: u16,
}

// Classic BPF (`<linux/filter.h>`): the opcodes and ancillary loads used.
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
const SKF_AD_OFF: i32 = -0x1000;
const SKF_AD_PKTTYPE: i32 = 4;
const SKF_AD_IFINDEX: i32 = 8;

/// The filter: frames of interface `ifindex` only, and on loopback not
/// those going out.
fn filter(ifindex: u32, loopback: bool) -> Vec<SockFilter> {
    let ancillary = |k: i32| (SKF_AD_OFF + k) as u32;
    let all = 0x0004_0000; // bytes of a frame to pass: all of it
    let mut f = vec![
        SockFilter::new(BPF_LD_W_ABS, 0, 0, ancillary(SKF_AD_IFINDEX)),
        // Equal: on; else jump to the drop at the end.
        SockFilter::new(BPF_JEQ_K, 0, if loopback { 3 } else { 1 }, ifindex),
    ];
    if loopback {
        f.push(SockFilter::new(
            BPF_LD_W_ABS,
            0,
            0,
            ancillary(SKF_AD_PKTTYPE),
        ));
        f.push(SockFilter::new(BPF_JEQ_K, 1, 0, u32::from(PACKET_OUTGOING)));
    }
    f.push(SockFilter::new(BPF_RET_K, 0, 0, all));
    f.push(SockFilter::new(BPF_RET_K, 0, 0, 0));
    f
}

impl PacketSocket {
    /// Open a packet socket on `interface` (non-blocking; wait for it
    /// with `poll` on [`AsFd`]).
    pub fn open(interface: &str) -> Result<PacketSocket, PacketError> {
        let io = |source: std::io::Error| PacketError::Io {
            interface: interface.to_owned(),
            source,
        };
        let ifindex = nix::net::if_::if_nametoindex(interface)
            .map_err(|_| PacketError::NoSuchInterface(interface.to_owned()))?;
        let loopback = nix::ifaddrs::getifaddrs()
            .map_err(|e| io(e.into()))?
            .any(|a| {
                a.interface_name == interface && a.flags.contains(InterfaceFlags::IFF_LOOPBACK)
            });
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::EthAll,
        )
        .map_err(|e| match e {
            Errno::EPERM | Errno::EACCES => PacketError::Permission(interface.to_owned()),
            e => io(e.into()),
        })?;
        SockRef::from(&fd)
            .attach_filter(&filter(ifindex, loopback))
            .map_err(io)?;
        // Room for a burst while the recorder is busy (the kernel caps it
        // at net.core.rmem_max without CAP_NET_ADMIN).
        let room = 8 << 20;
        if setsockopt(&fd, sockopt::RcvBufForce, &room).is_err() {
            let _ = setsockopt(&fd, sockopt::RcvBuf, &room);
        }
        Ok(PacketSocket {
            fd,
            interface: interface.to_owned(),
            ifindex: usize::try_from(ifindex).unwrap_or(usize::MAX),
            loopback,
        })
    }

    /// The interface's name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The interface's index.
    pub fn ifindex(&self) -> usize {
        self.ifindex
    }

    /// Read the next frame into `buf` (a frame longer than `buf` is cut
    /// short); `None` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<Frame>, PacketError> {
        loop {
            match recvfrom::<LinkAddr>(self.fd.as_raw_fd(), buf) {
                Ok((len, Some(from))) => {
                    if from.ifindex() != self.ifindex
                        || (self.loopback && from.pkttype() == PACKET_OUTGOING)
                    {
                        continue;
                    }
                    return Ok(Some(Frame {
                        len: len.min(buf.len()),
                        hatype: from.hatype(),
                    }));
                }
                Ok((_, None)) => continue,
                Err(Errno::EAGAIN) => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    return Err(PacketError::Io {
                        interface: self.interface.clone(),
                        source: e.into(),
                    });
                }
            }
        }
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_jumps_land_on_the_drop() {
        for loopback in [false, true] {
            let f = filter(7, loopback);
            // ld ifindex; jeq; [ld pkttype; jeq]; ret all; ret 0
            assert_eq!(f.len(), if loopback { 6 } else { 4 });
        }
    }

    #[test]
    fn an_unknown_interface_is_named() {
        let e = PacketSocket::open("no-such-if0").unwrap_err();
        assert!(matches!(e, PacketError::NoSuchInterface(ref n) if n == "no-such-if0"));
    }
}
