//! The service gate: a request for a ttrpc service the shim does not serve
//! is answered UNIMPLEMENTED ("service <name>"), as containerd's Go ttrpc
//! server answers it. ttrpc-rust's server answers INVALID_ARGUMENT there,
//! which a client cannot tell apart from a bad request to a real service.
//!
//! The gate sits between the socket and the ttrpc server. It reads whole
//! frames: a request frame names its service in its first protobuf field;
//! one the server knows passes through untouched, any other is taken out of
//! the stream and answered here. Answers are written only between the
//! server's own frames, so the two never interleave on the wire. Every other
//! frame (stream data, a request too large to read) passes through as it
//! arrives, for the server to judge.
//!
//! The change belongs in ttrpc-rust itself: `HandlerContext::handle_msg`
//! in `src/asynchronous/server.rs` (and `sync/server.rs`) should return
//! `get_status(Code::UNIMPLEMENTED, format!("service {}", req.service))` for
//! an unknown service, as the Go server's `services.resolve` does. Once a
//! ttrpc release does, this module can go.

use std::collections::HashSet;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};

use protobuf::Message as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ttrpc::proto::{
    Code, MessageHeader, Request, Response, Status, MESSAGE_HEADER_LENGTH, MESSAGE_LENGTH_MAX,
    MESSAGE_TYPE_REQUEST,
};

/// The answer to a request for `service` on `stream_id`.
pub fn unimplemented_frame(stream_id: u32, service: &str) -> Vec<u8> {
    let mut status = Status::new();
    status.set_code(Code::UNIMPLEMENTED);
    status.set_message(format!("service {service}"));
    let mut resp = Response::new();
    resp.set_status(status);
    // Encoding a message of two small fields into a Vec cannot fail.
    let body = resp.write_to_bytes().unwrap_or_default();
    let mut frame: Vec<u8> = MessageHeader::new_response(stream_id, body.len() as u32).into();
    frame.extend_from_slice(&body);
    frame
}

/// Splits inbound bytes into what the server reads and what the gate
/// answers itself. Pure, so it is tested (and fuzzed) without a socket.
#[derive(Debug)]
pub struct Sifter {
    known: Arc<HashSet<String>>,
    /// Bytes read and not yet sifted: at most one incomplete frame.
    pending: Vec<u8>,
    /// Bytes of the current frame still to pass through unparsed.
    pass: usize,
}

impl Sifter {
    pub fn new(known: Arc<HashSet<String>>) -> Self {
        Sifter {
            known,
            pending: Vec::new(),
            pass: 0,
        }
    }

    /// Feeds `input`; appends what the server should read to `to_server`
    /// and the gate's own answers to `replies`.
    pub fn feed(&mut self, input: &[u8], to_server: &mut Vec<u8>, replies: &mut Vec<u8>) {
        self.pending.extend_from_slice(input);
        let mut at = 0;
        loop {
            let rest = &self.pending[at..];
            if self.pass > 0 {
                let n = self.pass.min(rest.len());
                to_server.extend_from_slice(&rest[..n]);
                self.pass -= n;
                at += n;
                if self.pass > 0 {
                    break;
                }
                continue;
            }
            if rest.len() < MESSAGE_HEADER_LENGTH {
                break;
            }
            let header = MessageHeader::from(&rest[..MESSAGE_HEADER_LENGTH]);
            let len = header.length as usize;
            if header.type_ != MESSAGE_TYPE_REQUEST || len > MESSAGE_LENGTH_MAX {
                self.pass = MESSAGE_HEADER_LENGTH + len;
                continue;
            }
            let total = MESSAGE_HEADER_LENGTH + len;
            if rest.len() < total {
                break;
            }
            let frame = &rest[..total];
            match Request::parse_from_bytes(&frame[MESSAGE_HEADER_LENGTH..]) {
                Ok(req) if !self.known.contains(&req.service) => {
                    replies.extend_from_slice(&unimplemented_frame(header.stream_id, &req.service));
                }
                // Known, or not a request the gate can read: the server's call.
                _ => to_server.extend_from_slice(frame),
            }
            at += total;
        }
        self.pending.drain(..at);
    }

    /// At end of input: whatever part of a frame is left goes to the
    /// server, which sees the connection end mid-frame.
    pub fn finish(&mut self, to_server: &mut Vec<u8>) {
        to_server.append(&mut self.pending);
        self.pass = 0;
    }
}

/// Where the server's outbound bytes stand: the gate answers only between
/// two of its frames.
#[derive(Debug, Default)]
pub struct OutFrames {
    header: [u8; MESSAGE_HEADER_LENGTH],
    have: usize,
    body_left: usize,
}

impl OutFrames {
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.body_left == 0
    }

    pub fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (MESSAGE_HEADER_LENGTH - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == MESSAGE_HEADER_LENGTH {
                self.body_left = MessageHeader::from(&self.header[..]).length as usize;
                self.have = 0;
            }
        }
    }
}

/// A connection with the gate in front of the server.
pub struct Gated<S> {
    inner: S,
    sifter: Sifter,
    to_server: Vec<u8>,
    served: usize,
    replies: Vec<u8>,
    replied: usize,
    out: OutFrames,
    read_waker: Option<Waker>,
    eof: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Gated<S> {
    pub fn new(inner: S, known: Arc<HashSet<String>>) -> Self {
        Gated {
            inner,
            sifter: Sifter::new(known),
            to_server: Vec::new(),
            served: 0,
            replies: Vec::new(),
            replied: 0,
            out: OutFrames::default(),
            read_waker: None,
            eof: false,
        }
    }

    /// Writes the gate's answers, if the server is between frames.
    fn poll_replies(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.out.at_boundary() {
            return Poll::Pending;
        }
        while self.replied < self.replies.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.replies[self.replied..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.replied += n;
        }
        self.replies.clear();
        self.replied = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Gated<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        me.read_waker = Some(cx.waker().clone());
        loop {
            if !me.replies.is_empty() {
                // Pending registers this task for the socket's write
                // readiness, or the server's writer wakes it at its
                // next frame boundary.
                if let Poll::Ready(Err(e)) = me.poll_replies(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            if me.served < me.to_server.len() {
                let n = buf.remaining().min(me.to_server.len() - me.served);
                buf.put_slice(&me.to_server[me.served..me.served + n]);
                me.served += n;
                if me.served == me.to_server.len() {
                    me.to_server.clear();
                    me.served = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if me.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut me.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                me.eof = true;
                me.sifter.finish(&mut me.to_server);
            } else {
                me.sifter
                    .feed(rb.filled(), &mut me.to_server, &mut me.replies);
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Gated<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if !me.replies.is_empty() && me.out.at_boundary() {
            ready!(me.poll_replies(cx))?;
        }
        let n = ready!(Pin::new(&mut me.inner).poll_write(cx, data))?;
        me.out.advance(&data[..n]);
        if !me.replies.is_empty() && me.out.at_boundary() {
            // The reader owes an answer that waited for this frame's end.
            if let Some(w) = me.read_waker.take() {
                w.wake();
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if !me.replies.is_empty() && me.out.at_boundary() {
            ready!(me.poll_replies(cx))?;
        }
        Pin::new(&mut me.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Arc<HashSet<String>> {
        Arc::new(["a.Known".to_string()].into_iter().collect())
    }

    fn request(stream_id: u32, service: &str) -> Vec<u8> {
        let mut req = Request::new();
        req.set_service(service.into());
        req.set_method("M".into());
        let body = req.write_to_bytes().unwrap();
        let mut f: Vec<u8> = MessageHeader::new_request(stream_id, body.len() as u32).into();
        f.extend_from_slice(&body);
        f
    }

    fn status_of(frame: &[u8]) -> (u32, Code, String) {
        let h = MessageHeader::from(&frame[..MESSAGE_HEADER_LENGTH]);
        let resp = Response::parse_from_bytes(&frame[MESSAGE_HEADER_LENGTH..]).unwrap();
        let st = resp.status.unwrap();
        (h.stream_id, st.code.enum_value().unwrap(), st.message)
    }

    #[test]
    fn known_services_pass_unknown_are_answered() {
        let mut s = Sifter::new(known());
        let (mut to, mut re) = (Vec::new(), Vec::new());
        let mut input = request(1, "a.Known");
        input.extend(request(3, "b.Unknown"));
        input.extend(request(5, "a.Known"));
        s.feed(&input, &mut to, &mut re);
        let mut want = request(1, "a.Known");
        want.extend(request(5, "a.Known"));
        assert_eq!(to, want);
        let (id, code, msg) = status_of(&re);
        assert_eq!(
            (id, code, msg.as_str()),
            (3, Code::UNIMPLEMENTED, "service b.Unknown")
        );
    }

    #[test]
    fn frames_split_anywhere_sift_the_same() {
        let mut input = request(1, "b.Unknown");
        input.extend(request(3, "a.Known"));
        for cut in 0..input.len() {
            let mut s = Sifter::new(known());
            let (mut to, mut re) = (Vec::new(), Vec::new());
            s.feed(&input[..cut], &mut to, &mut re);
            s.feed(&input[cut..], &mut to, &mut re);
            assert_eq!(to, request(3, "a.Known"), "cut at {cut}");
            assert_eq!(status_of(&re).0, 1);
        }
    }

    #[test]
    fn other_frames_and_oversized_requests_pass_through() {
        let mut s = Sifter::new(known());
        let (mut to, mut re) = (Vec::new(), Vec::new());
        let mut data: Vec<u8> = MessageHeader::new_data(1, 3).into();
        data.extend_from_slice(b"xyz");
        s.feed(&data, &mut to, &mut re);
        assert_eq!(to, data);
        // A request larger than ttrpc allows goes to the server, which
        // discards it and answers; the gate does not buffer it.
        let big: Vec<u8> = MessageHeader::new_request(3, (MESSAGE_LENGTH_MAX + 1) as u32).into();
        to.clear();
        s.feed(&big, &mut to, &mut re);
        s.feed(&[7u8; 100], &mut to, &mut re);
        assert_eq!(to.len(), big.len() + 100);
        assert!(re.is_empty());
        // Garbage in a request body is the server's to reject.
        let mut junk: Vec<u8> = MessageHeader::new_request(5, 2).into();
        junk.extend_from_slice(&[0xff, 0xff]);
        to.clear();
        s.feed(&junk, &mut to, &mut re);
        s.finish(&mut to);
        assert!(to.ends_with(&[0xff, 0xff]));
    }

    #[test]
    fn out_frames_track_boundaries_byte_by_byte() {
        let mut f: Vec<u8> = MessageHeader::new_response(1, 4).into();
        f.extend_from_slice(b"abcd");
        let mut o = OutFrames::default();
        for (i, b) in f.iter().enumerate() {
            assert_eq!(o.at_boundary(), i == 0);
            o.advance(&[*b]);
        }
        assert!(o.at_boundary());
        let mut two = f.clone();
        two.extend_from_slice(&f);
        o.advance(&two[..13]);
        assert!(!o.at_boundary());
        o.advance(&two[13..]);
        assert!(o.at_boundary());
    }
}
