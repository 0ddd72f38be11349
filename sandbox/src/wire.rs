//! The engine ↔ launcher protocol over a SOCK_SEQPACKET socketpair: one message per request or
//! reply, file descriptors travel as SCM_RIGHTS.
//!
//! Invariants: the launcher side ([`decode_request`], [`send_msg`], [`recv_msg`]) never
//! allocates (the launcher may be a fork of a multi-threaded process); it decodes into
//! buffers allocated before the fork. Encoding happens in the engine and may allocate.
//! A request is a fixed header of u64 words followed by NUL-terminated strings: program,
//! hostname, workdir, tmpfs options, argv, envp, then (source, target) pairs of binds.

use std::ffi::{CStr, c_char};
use std::os::fd::RawFd;

use nix::errno::Errno;

use crate::sys::SysResult;

/// Largest request: argv + env + paths. Kept under the socket's default send buffer.
pub const MAX_REQUEST: usize = 128 * 1024;
/// Most argv + envp + bind entries a request may carry.
pub const MAX_STRINGS: usize = 4096;
const MAGIC: u64 = 0xc0de_3232_5a4e_0001;
const HEADER_WORDS: usize = 6;
/// Request flag: run in the host's network namespace.
pub const FLAG_NETWORK: u64 = 1;

/// Reply kinds from the launcher.
pub const REPLY_READY: i64 = 1;
pub const REPLY_FATAL: i64 = 2;
pub const REPLY_STARTED: i64 = 3;
pub const REPLY_FAILED: i64 = 4;
pub const REPLY_EXITED: i64 = 5;

/// A launcher reply: a kind and up to five values (see the `REPLY_*` users for their meaning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reply {
    pub kind: i64,
    pub vals: [i64; 5],
}

impl Reply {
    pub fn new(kind: i64, vals: [i64; 5]) -> Self {
        Self { kind, vals }
    }

    pub fn to_bytes(self) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..8].copy_from_slice(&self.kind.to_ne_bytes());
        for (i, v) in self.vals.iter().enumerate() {
            out[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_ne_bytes());
        }
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 48 {
            return None;
        }
        let word =
            |i: usize| i64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        Some(Self {
            kind: word(0),
            vals: [word(1), word(2), word(3), word(4), word(5)],
        })
    }
}

/// A read-only bind as sent to the launcher: (host source, absolute target under the
/// launcher's template root), both without NULs.
pub type BindPair = (Vec<u8>, Vec<u8>);

/// What the engine sends to start a sandbox (strings without NULs; checked by the engine).
pub struct RequestOut<'a> {
    pub flags: u64,
    pub nofile: u64,
    pub program: &'a str,
    pub hostname: &'a str,
    pub workdir: &'a [u8],
    pub tmp_opts: &'a str,
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    /// (host source, absolute target under the launcher's template root).
    pub binds: &'a [BindPair],
}

/// Serialises a request; fails if it would exceed [`MAX_REQUEST`] or [`MAX_STRINGS`].
pub fn encode_request(r: &RequestOut<'_>) -> Result<Vec<u8>, String> {
    let strings = 1 + r.args.len() + r.env.len() + 2 * r.binds.len();
    if strings + 2 > MAX_STRINGS {
        return Err(format!(
            "{strings} argv/env/bind entries, at most {MAX_STRINGS}"
        ));
    }
    let words = [
        MAGIC,
        r.flags,
        r.nofile,
        (r.args.len() + 1) as u64,
        r.env.len() as u64,
        r.binds.len() as u64,
    ];
    let mut out = Vec::with_capacity(4096);
    for w in words {
        out.extend_from_slice(&w.to_ne_bytes());
    }
    let mut push = |s: &[u8]| {
        out.extend_from_slice(s);
        out.push(0);
    };
    for s in [
        r.program.as_bytes(),
        r.hostname.as_bytes(),
        r.workdir,
        r.tmp_opts.as_bytes(),
        r.program.as_bytes(),
    ] {
        push(s);
    }
    for a in r.args {
        push(a.as_bytes());
    }
    for (k, v) in r.env {
        push(format!("{k}={v}").as_bytes());
    }
    for (src, dst) in r.binds {
        push(src);
        push(dst);
    }
    if out.len() > MAX_REQUEST {
        return Err(format!(
            "request is {} bytes, at most {MAX_REQUEST}",
            out.len()
        ));
    }
    Ok(out)
}

/// A decoded request, borrowing the launcher's receive buffer.
pub struct Request<'a> {
    pub flags: u64,
    pub nofile: u64,
    pub program: &'a CStr,
    pub hostname: &'a CStr,
    pub workdir: &'a CStr,
    pub tmp_opts: &'a CStr,
    /// NULL-terminated argv.
    pub argv: &'a [*const c_char],
    /// NULL-terminated envp.
    pub envp: &'a [*const c_char],
    /// Pairs (source, target).
    pub binds: &'a [*const c_char],
}

/// Splits off the next NUL-terminated string.
fn next_str<'a>(buf: &mut &'a [u8]) -> SysResult<&'a CStr> {
    let end = buf.iter().position(|&b| b == 0).ok_or(Errno::EINVAL)?;
    let s = CStr::from_bytes_with_nul(&buf[..=end]).map_err(|_| Errno::EINVAL)?;
    *buf = &buf[end + 1..];
    Ok(s)
}

/// Decodes `buf` into `ptrs` (capacity [`MAX_STRINGS`], allocated before the fork) without
/// allocating: `ptrs` is cleared and filled within its capacity.
pub fn decode_request<'a>(
    buf: &'a [u8],
    ptrs: &'a mut Vec<*const c_char>,
) -> SysResult<Request<'a>> {
    let hdr = HEADER_WORDS * 8;
    if buf.len() < hdr {
        return Err(Errno::EINVAL);
    }
    let word = |i: usize| u64::from_ne_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    let (argc, envc, nbinds) = (word(3) as usize, word(4) as usize, word(5) as usize);
    if word(0) != MAGIC || argc + envc + 2 * nbinds + 2 > ptrs.capacity() {
        return Err(Errno::EINVAL);
    }
    let mut rest = &buf[hdr..];
    let (program, hostname) = (next_str(&mut rest)?, next_str(&mut rest)?);
    let (workdir, tmp_opts) = (next_str(&mut rest)?, next_str(&mut rest)?);
    ptrs.clear();
    for (count, terminate) in [(argc, true), (envc, true), (2 * nbinds, false)] {
        for _ in 0..count {
            ptrs.push(next_str(&mut rest)?.as_ptr());
        }
        if terminate {
            ptrs.push(std::ptr::null());
        }
    }
    let (argv, rest) = ptrs.split_at(argc + 1);
    let (envp, binds) = rest.split_at(envc + 1);
    Ok(Request {
        flags: word(1),
        nofile: word(2),
        program,
        hostname,
        workdir,
        tmp_opts,
        argv,
        envp,
        binds,
    })
}

/// Room for up to four fds in one control message, aligned for cmsghdr.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// sendmsg with optional SCM_RIGHTS fds (at most 4).
pub fn send_msg(sock: RawFd, data: &[u8], fds: &[RawFd]) -> SysResult<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    let mut cbuf = CmsgBuf([0; 64]);
    // SAFETY: msghdr is plain data; zeroed is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let fd_bytes = std::mem::size_of_val(fds) as u32;
        msg.msg_control = cbuf.0.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a pure computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(fd_bytes) } as usize;
        // SAFETY: msg_control points at a buffer of msg_controllen (≤ 64) bytes, so the first
        // header and its data (at most 4 fds) fit.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes) as usize;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                fd_bytes as usize,
            );
        }
    }
    loop {
        // SAFETY: msg points at valid iov and control buffers for the call.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// recvmsg: returns the message length (0 = peer closed) and how many fds landed in `fds`.
/// Received fds are close-on-exec.
pub fn recv_msg(sock: RawFd, buf: &mut [u8], fds: &mut [RawFd; 4]) -> SysResult<(usize, usize)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = CmsgBuf([0; 64]);
    // SAFETY: msghdr is plain data; zeroed is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.0.len();
    let n = loop {
        // SAFETY: msg points at valid buffers.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    };
    let mut nfds = 0;
    // SAFETY: the kernel filled msg_control with well-formed cmsg headers within controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize) / 4;
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..count {
                    let fd = data.add(i).read_unaligned();
                    if nfds < fds.len() {
                        fds[nfds] = fd;
                        nfds += 1;
                    } else {
                        libc::close(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(Errno::EMSGSIZE);
    }
    Ok((n, nfds))
}
