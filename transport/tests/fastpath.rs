//! The datagram fast path over real QUIC connections on 127.0.0.1: sealed
//! datagrams both ways with the sender's certificate identity, one UDP
//! packet each; tampered, replayed, foreign and random packets dropped and
//! counted (through a relay that sees every packet); new keys after a
//! restart of either end, with the old ones refused; the dial queue and
//! the switch-over losing nothing; the fallback to QUIC datagrams when the
//! path drops sealed packets; streams unaffected on the same socket.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failed test.

mod common;

use std::time::{Duration, Instant};

use common::*;
use phimon_gossip::NodeId;
use phimon_transport::{Channel, DatagramDrop, DatagramPath, Received, Transport, TransportConfig};
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

const SECOND: Duration = Duration::from_secs(1);

fn id(s: &str) -> NodeId {
    NodeId::from(s)
}

/// Sends a datagram to `to` every 20 ms until its connection's datagrams
/// take the fast path, draining what arrives at `rx`.
async fn until_fast(t: &Transport, to: &phimon_transport::Peer, rx: &mut mpsc::Receiver<Received>) {
    let node = to.node_id.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while t.datagram_path(&node) != Some(DatagramPath::Fast) {
        assert!(Instant::now() < deadline, "no fast path to {node} in time");
        t.send_datagram(to, b"warm-up").unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        while rx.try_recv().is_ok() {}
    }
    // Past the early check (after the second sealed packet), so that what
    // follows is sealed packets only.
    for _ in 0..3 {
        t.send_datagram(to, b"warm-up").unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    while rx.try_recv().is_ok() {}
}

/// Waits until none of `ts` has written a UDP packet for 300 ms, so that
/// no ACK or probe of earlier traffic is still due.
async fn quiet(ts: &[&Transport]) {
    let written = || -> u64 { ts.iter().map(|t| t.snapshot().udp_packets_out).sum() };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = written();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = written();
        if now == last {
            return;
        }
        assert!(Instant::now() < deadline, "endpoints never went quiet");
        last = now;
    }
}

/// Whatever arrives within `within`.
async fn drain(rx: &mut mpsc::Receiver<Received>, within: Duration) -> Vec<Received> {
    let mut v = Vec::new();
    while let Ok(Some(r)) = tokio::time::timeout(within, rx.recv()).await {
        v.push(r);
    }
    v
}

#[tokio::test]
async fn sealed_datagrams_flow_both_ways_one_packet_each_and_streams_still_work() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, mut a_rx) = node(dir.path(), "node-a");
    let (b, mut b_rx) = node(dir.path(), "node-b");
    a.send_datagram(&peer("node-b", &b), b"hello").unwrap();
    assert_eq!(&recv(&mut b_rx, 5 * SECOND).await.payload[..], b"hello");
    until_fast(&a, &peer("node-b", &b), &mut b_rx).await;
    until_fast(&b, &by_id("node-a"), &mut a_rx).await;
    quiet(&[&a, &b]).await;

    let (sa, sb) = (a.snapshot(), b.snapshot());
    for i in 0..20u32 {
        a.send_datagram(&peer("node-b", &b), &i.to_be_bytes())
            .unwrap();
        b.send_datagram(&by_id("node-a"), &(100 + i).to_be_bytes())
            .unwrap();
    }
    let (at_b, at_a) = (
        drain(&mut b_rx, SECOND / 2).await,
        drain(&mut a_rx, SECOND / 2).await,
    );
    let payloads = |v: &[Received]| -> Vec<u32> {
        v.iter()
            .map(|r| u32::from_be_bytes(r.payload[..].try_into().unwrap()))
            .collect()
    };
    assert_eq!(payloads(&at_b), (0..20).collect::<Vec<_>>());
    assert_eq!(payloads(&at_a), (100..120).collect::<Vec<_>>());
    for (got, from, sender) in [(&at_b, "node-a", &a), (&at_a, "node-b", &b)] {
        for r in got.iter() {
            assert_eq!((r.node_id.as_str(), r.channel), (from, Channel::Datagram));
            assert_eq!(r.remote, sender.local_addr());
        }
    }
    let (ea, eb) = (a.snapshot(), b.snapshot());
    // One UDP packet per datagram, nothing else: no ACK, no timer.
    assert_eq!(ea.fast_path_out - sa.fast_path_out, 20);
    assert_eq!(ea.udp_packets_out - sa.udp_packets_out, 20);
    assert_eq!(eb.udp_packets_out - sb.udp_packets_out, 20);
    assert_eq!(eb.udp_packets_in - sb.udp_packets_in, 20);
    assert_eq!(eb.fast_path_in - sb.fast_path_in, 20);
    assert_eq!(eb.datagrams_in - sb.datagrams_in, 20);
    for s in [&ea, &eb] {
        assert!(
            s.datagram_drops_by_reason.iter().all(|(_, n)| *n == 0),
            "{:?}",
            s.datagram_drops_by_reason
        );
        assert_eq!(s.fast_path_fallbacks, 0);
    }

    // Messages still ride QUIC streams on the same socket, both ways.
    a.send_message(&peer("node-b", &b), b"syn".to_vec())
        .unwrap();
    let m = recv(&mut b_rx, 5 * SECOND).await;
    assert_eq!((m.channel, &m.payload[..]), (Channel::Message, &b"syn"[..]));
    b.send_message(&by_id("node-a"), b"ack".to_vec()).unwrap();
    let m = recv(&mut a_rx, 5 * SECOND).await;
    assert_eq!(
        (m.channel, &m.payload[..], m.node_id.as_str()),
        (Channel::Message, &b"ack"[..], "node-b")
    );
    assert!(a.flush(5 * SECOND).await && b.flush(5 * SECOND).await);
    assert_eq!(
        (a.snapshot().connections_open, b.snapshot().connections_open),
        (1, 1)
    );
}

#[tokio::test]
async fn tampered_replayed_foreign_and_random_packets_are_dropped_and_counted() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, _a_rx) = node(dir.path(), "node-a");
    let (b, mut b_rx) = node(dir.path(), "node-b");
    let relay = Relay::start(b.local_addr()).await;
    let to_b = via("node-b", &relay);
    until_fast(&a, &to_b, &mut b_rx).await;
    a.send_datagram(&to_b, b"delivered").unwrap();
    let r = recv(&mut b_rx, 5 * SECOND).await;
    assert_eq!(
        (&r.payload[..], r.node_id.as_str()),
        (&b"delivered"[..], "node-a")
    );
    let delivered = relay.captured().pop().unwrap();
    // A genuine packet node-b has not seen: held back by the relay.
    relay.drop_fast_path(true);
    a.send_datagram(&to_b, b"held back").unwrap();
    eventually(5 * SECOND, "packet held back", || {
        relay.captured().last() != Some(&delivered)
    })
    .await;
    relay.drop_fast_path(false);
    let held = relay.captured().pop().unwrap();
    let before = b.snapshot();

    // A delivered packet again, twice.
    relay.inject(&delivered).await;
    relay.inject(&delivered).await;
    // One flipped bit anywhere past the key id of the unseen packet: in
    // the counter, the payload or the tag.
    let mut flipped = 0;
    for i in 10..held.len() {
        let mut p = held.clone();
        // The counter is small: flipping the top bit of its last byte
        // makes it larger, never one already seen.
        p[i] ^= if i == 17 { 0x80 } else { 0x04 };
        relay.inject(&p).await;
        flipped += 1;
    }
    // An unknown key id.
    let mut p = held.clone();
    p[9] ^= 0xff;
    relay.inject(&p).await;
    // The genuine packet from another address.
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    stranger.send_to(&held, b.local_addr()).await.unwrap();
    // Malformed: too short, an unknown version, an unknown type.
    let mut bad_version = held.clone();
    bad_version[1] = 7;
    for p in [&held[..20], &bad_version[..], &[0x3f, 1, 2, 3][..]] {
        relay.inject(p).await;
    }
    // Random noise of every length, first byte in the fast-path range.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut noise = 0;
    for len in 1..300 {
        let mut p: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        p[0] &= 0x3f;
        relay.inject(&p).await;
        noise += 1;
    }

    assert!(
        drain(&mut b_rx, SECOND / 2).await.is_empty(),
        "nothing forged was delivered"
    );
    let after = b.snapshot();
    let d = |r| after.datagram_drops(r) - before.datagram_drops(r);
    assert_eq!(d(DatagramDrop::Replay), 2);
    assert_eq!(d(DatagramDrop::BadMac), flipped);
    assert_eq!(d(DatagramDrop::WrongSource), 1);
    let total: u64 = DatagramDrop::ALL.iter().map(|r| d(*r)).sum();
    assert_eq!(
        total,
        2 + flipped + 1 + 1 + 3 + noise,
        "every packet counted once"
    );
    assert!(d(DatagramDrop::UnknownKey) >= 1);
    assert!(d(DatagramDrop::Malformed) >= 3);
    assert_eq!(after.datagrams_in, before.datagrams_in);

    // None of that spent the held-back packet's counter: it is accepted
    // once, late, and then refused as a replay.
    relay.inject(&held).await;
    let r = recv(&mut b_rx, 5 * SECOND).await;
    assert_eq!(
        (&r.payload[..], r.node_id.as_str()),
        (&b"held back"[..], "node-a")
    );
    relay.inject(&held).await;
    // The connection is untouched: the next datagram arrives.
    a.send_datagram(&to_b, b"still here").unwrap();
    assert_eq!(
        &recv(&mut b_rx, 5 * SECOND).await.payload[..],
        b"still here"
    );
    assert_eq!(
        b.snapshot().datagram_drops(DatagramDrop::Replay),
        before.datagram_drops(DatagramDrop::Replay) + 3
    );
    assert_eq!(a.datagram_path(&id("node-b")), Some(DatagramPath::Fast));
}

/// A node on its own runtime, so that it can die without a word, as a
/// killed process would.
fn killable(
    cfg: TransportConfig,
) -> (tokio::runtime::Runtime, Transport, mpsc::Receiver<Received>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (t, rx) = {
        let _enter = rt.enter();
        Transport::bind(cfg).unwrap()
    };
    (rt, t, rx)
}

/// Binds `cfg` again until its old socket is released.
async fn rebind(cfg: TransportConfig) -> (Transport, mpsc::Receiver<Received>) {
    let deadline = Instant::now() + 5 * SECOND;
    loop {
        match Transport::bind(cfg.clone()) {
            Ok(t) => return t,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot rebind: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn key_id(p: &[u8]) -> [u8; 8] {
    p[2..10].try_into().unwrap()
}

#[tokio::test]
async fn a_restarted_receiver_gets_new_keys_and_refuses_the_old_ones() {
    let dir = pki(&["node-a", "node-b"]);
    // A long idle timeout: only the notice, then the stateless reset, can
    // make node-a notice the restart quickly.
    let slow = |id| TransportConfig {
        idle_timeout: Duration::from_secs(60),
        ..config(dir.path(), id)
    };
    let (a, _a_rx) = Transport::bind(slow("node-a")).unwrap();
    let (b_rt, b, mut b_rx) = killable(slow("node-b"));
    let b_addr = b.local_addr();
    let relay = Relay::start(b_addr).await;
    let to_b = via("node-b", &relay);
    until_fast(&a, &to_b, &mut b_rx).await;
    let old = relay.captured().pop().unwrap();

    b_rt.shutdown_background();
    drop((b, b_rx));
    let (b2, mut b2_rx) = rebind(TransportConfig {
        listen: b_addr,
        ..slow("node-b")
    })
    .await;

    // node-a keeps sending: its first sealed packet draws a notice, its
    // check a stateless reset, and the next datagram dials afresh.
    let started = Instant::now();
    let mut sent = 0u32;
    loop {
        a.send_datagram(&to_b, &sent.to_be_bytes()).unwrap();
        sent += 1;
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(50), b2_rx.recv()).await {
            assert_eq!(r.node_id, id("node-a"));
            break;
        }
        assert!(
            started.elapsed() < 3 * SECOND,
            "restarted peer not reached within 3 s ({sent} sent)"
        );
    }
    assert!(b2.snapshot().notices_out >= 1, "the old key drew a notice");
    until_fast(&a, &to_b, &mut b2_rx).await;
    a.send_datagram(&to_b, b"new keys").unwrap();
    assert_eq!(&recv(&mut b2_rx, 5 * SECOND).await.payload[..], b"new keys");
    let new = relay.captured().pop().unwrap();
    assert_ne!(key_id(&new), key_id(&old), "a new connection, new keys");
    assert!(b2.snapshot().fast_path_in >= 1);

    // A packet sealed with the old key is refused.
    let before = b2.snapshot().datagram_drops(DatagramDrop::UnknownKey);
    relay.inject(&old).await;
    assert!(drain(&mut b2_rx, SECOND / 2).await.is_empty());
    assert_eq!(
        b2.snapshot().datagram_drops(DatagramDrop::UnknownKey),
        before + 1
    );
}

#[tokio::test]
async fn a_restarted_sender_gets_new_keys_and_its_old_ones_go_with_its_old_connection() {
    let dir = pki(&["node-a", "node-b"]);
    let slow = |id| TransportConfig {
        idle_timeout: Duration::from_secs(60),
        ..config(dir.path(), id)
    };
    let (b, mut b_rx) = Transport::bind(slow("node-b")).unwrap();
    let relay = Relay::start(b.local_addr()).await;
    let to_b = via("node-b", &relay);
    let (a_rt, a, a_rx) = killable(slow("node-a"));
    until_fast(&a, &to_b, &mut b_rx).await;
    let old = relay.captured().pop().unwrap();
    assert_eq!(b.snapshot().connections_open, 1);

    a_rt.shutdown_background();
    drop((a, a_rx));
    // The new process, from another port: through the relay node-b sees
    // the same address, as it would for a process restarted in place.
    let (a2, _a2_rx) = Transport::bind(slow("node-a")).unwrap();
    until_fast(&a2, &to_b, &mut b_rx).await;
    let new = relay.captured().pop().unwrap();
    assert_ne!(key_id(&new), key_id(&old));
    // node-b checked the old connection when the new one came: node-a's
    // successor answered with a stateless reset, so it is gone, and with
    // it the old key.
    eventually(5 * SECOND, "old connection closed", || {
        b.snapshot().connections_open == 1
    })
    .await;
    let before = b.snapshot().datagram_drops(DatagramDrop::UnknownKey);
    let mut replay = old.clone();
    // Even with a counter never seen.
    replay[17] ^= 0x40;
    relay.inject(&replay).await;
    assert!(drain(&mut b_rx, SECOND / 2).await.is_empty());
    assert_eq!(
        b.snapshot().datagram_drops(DatagramDrop::UnknownKey),
        before + 1
    );
}

#[tokio::test]
async fn datagrams_sent_before_and_during_the_switch_over_are_not_lost() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, _a_rx) = node(dir.path(), "node-a");
    let (b, mut b_rx) = node(dir.path(), "node-b");
    let queue = a.config().dial_queue_len as u32;
    // Before any connection: the newest `dial_queue_len` wait for it, the
    // oldest are dropped and counted.
    for i in 0..queue + 4 {
        a.send_datagram(&peer("node-b", &b), &i.to_be_bytes())
            .unwrap();
    }
    let mut got: Vec<u32> = Vec::new();
    for _ in 0..queue {
        let r = recv(&mut b_rx, 5 * SECOND).await;
        got.push(u32::from_be_bytes(r.payload[..].try_into().unwrap()));
    }
    got.sort();
    assert_eq!(got, (4..queue + 4).collect::<Vec<_>>());
    assert_eq!(a.snapshot().send_dropped, 4);

    // Straight after the handshake, while node-b's key is not confirmed
    // yet, then across the switch to sealed packets: every one arrives.
    let mut sent = 0u32;
    while a.datagram_path(&id("node-b")) != Some(DatagramPath::Fast) || sent < 200 {
        a.send_datagram(&peer("node-b", &b), &(1000 + sent).to_be_bytes())
            .unwrap();
        sent += 1;
        if sent % 10 == 0 {
            tokio::task::yield_now().await;
        }
        assert!(sent < 100_000, "no fast path");
    }
    let mut got: Vec<u32> = drain(&mut b_rx, SECOND / 2)
        .await
        .iter()
        .map(|r| u32::from_be_bytes(r.payload[..].try_into().unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, (1000..1000 + sent).collect::<Vec<_>>());
    let s = a.snapshot();
    assert!(
        s.fast_path_out > 0 && s.fast_path_out < u64::from(sent),
        "{s:?}"
    );
    assert_eq!(s.send_dropped, 4);
}

#[tokio::test]
async fn a_path_that_drops_sealed_packets_falls_back_to_quic_datagrams() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, _a_rx) = node(dir.path(), "node-a");
    let (b, mut b_rx) = node(dir.path(), "node-b");
    let relay = Relay::start(b.local_addr()).await;
    relay.drop_fast_path(true);
    let to_b = via("node-b", &relay);
    a.send_datagram(&to_b, b"hello").unwrap();
    recv(&mut b_rx, 5 * SECOND).await;
    let mut seen_fast = false;
    let mut sent = 0u32;
    let started = Instant::now();
    while a.datagram_path(&id("node-b")) != Some(DatagramPath::Quic) {
        seen_fast |= a.datagram_path(&id("node-b")) == Some(DatagramPath::Fast);
        a.send_datagram(&to_b, &sent.to_be_bytes()).unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(started.elapsed() < 5 * SECOND, "no fallback");
    }
    assert!(seen_fast, "the fast path was tried");
    let received = drain(&mut b_rx, SECOND / 2).await.len() as u64;
    // Only the sealed packets are lost: the two before the first check
    // (and one more if the answer to it came late).
    let s = a.snapshot();
    assert!((2..=3).contains(&s.fast_path_out), "{}", s.fast_path_out);
    assert_eq!(received, u64::from(sent) - s.fast_path_out);
    assert_eq!(s.fast_path_fallbacks, 1);
    for i in 0..10u32 {
        a.send_datagram(&to_b, &i.to_be_bytes()).unwrap();
    }
    assert_eq!(drain(&mut b_rx, SECOND / 2).await.len(), 10);
    assert_eq!(a.datagram_path(&id("node-b")), Some(DatagramPath::Quic));
}

#[tokio::test]
async fn a_node_with_the_fast_path_off_talks_to_one_with_it_on() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, mut a_rx) = Transport::bind(TransportConfig {
        fast_path: false,
        ..config(dir.path(), "node-a")
    })
    .unwrap();
    let (b, mut b_rx) = node(dir.path(), "node-b");
    a.send_datagram(&peer("node-b", &b), b"hello").unwrap();
    recv(&mut b_rx, 5 * SECOND).await;
    until_fast(&b, &by_id("node-a"), &mut a_rx).await;
    for i in 0..10u32 {
        a.send_datagram(&peer("node-b", &b), &i.to_be_bytes())
            .unwrap();
        b.send_datagram(&by_id("node-a"), &i.to_be_bytes()).unwrap();
    }
    assert_eq!(drain(&mut b_rx, SECOND / 2).await.len(), 10);
    assert_eq!(drain(&mut a_rx, SECOND / 2).await.len(), 10);
    assert_eq!(a.datagram_path(&id("node-b")), Some(DatagramPath::Quic));
    assert_eq!(a.snapshot().fast_path_out, 0);
    assert!(b.snapshot().fast_path_out >= 10);
    assert_eq!(a.snapshot().fast_path_in, b.snapshot().fast_path_out);
}

/// Sends deferred datagrams to `to` until they go to its mailbox.
async fn until_mailbox(
    t: &Transport,
    to: &phimon_transport::Peer,
    rx: &mut mpsc::Receiver<Received>,
    peer: &Transport,
) {
    let node = to.node_id.clone().unwrap();
    until_fast(t, to, rx).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while t.uses_mailbox(&node) != Some(true) {
        assert!(Instant::now() < deadline, "no mailbox at {node} in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Past the early check that the first packets to the mailbox bring.
    for _ in 0..4 {
        t.send_deferred_datagram(to, b"warm-up").unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    peer.drain_mailbox();
    while rx.try_recv().is_ok() {}
}

#[tokio::test]
async fn heartbeats_wait_in_the_mailbox_and_keep_their_arrival_times() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, _a_rx) = Transport::bind(TransportConfig {
        fast_path_check_interval: Duration::from_millis(1500),
        ..config(dir.path(), "node-a")
    })
    .unwrap();
    let (b, mut b_rx) = node(dir.path(), "node-b");
    assert!(b.mailbox_port().is_some_and(|p| p != 0));
    a.send_datagram(&peer("node-b", &b), b"hello").unwrap();
    recv(&mut b_rx, 5 * SECOND).await;
    until_mailbox(&a, &peer("node-b", &b), &mut b_rx, &b).await;

    let sb = b.snapshot();
    let mut sent_at = Vec::new();
    for i in 0..5u32 {
        sent_at.push(Instant::now());
        a.send_deferred_datagram(&peer("node-b", &b), &i.to_be_bytes())
            .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // Nothing woke B: the packets wait in its mailbox.
    assert!(
        b_rx.try_recv().is_err(),
        "a mailbox packet was delivered unread"
    );
    assert_eq!(b.drain_mailbox(), 5);
    let got = drain(&mut b_rx, SECOND / 5).await;
    let payloads: Vec<u32> = got
        .iter()
        .map(|r| u32::from_be_bytes(r.payload[..].try_into().unwrap()))
        .collect();
    assert_eq!(payloads, (0..5).collect::<Vec<_>>());
    for (r, sent) in got.iter().zip(&sent_at) {
        // Stamped when it arrived, not when it was read (up to 300 ms
        // later).
        let off = r.received_at.saturating_duration_since(*sent);
        assert!(
            off < Duration::from_millis(40),
            "stamped {off:?} after it was sent"
        );
        assert!(r.received_at + Duration::from_millis(5) >= *sent);
        assert_eq!(r.node_id, id("node-a"));
        assert_eq!(r.channel, Channel::Datagram);
    }
    assert_eq!(b.snapshot().fast_path_in - sb.fast_path_in, 5);

    // Checks read the mailbox before they count: over a few of them, no
    // fallback, and nothing is lost.
    for i in 0..40u32 {
        a.send_deferred_datagram(&peer("node-b", &b), &i.to_be_bytes())
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.drain_mailbox();
    assert_eq!(drain(&mut b_rx, SECOND / 5).await.len(), 40);
    let s = a.snapshot();
    assert_eq!((s.mailbox_fallbacks, s.fast_path_fallbacks), (0, 0));
    assert_eq!(a.uses_mailbox(&id("node-b")), Some(true));
    assert_eq!(a.datagram_path(&id("node-b")), Some(DatagramPath::Fast));
}

#[tokio::test]
async fn heartbeats_that_cannot_reach_the_mailbox_move_to_the_main_socket() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, _a_rx) = node(dir.path(), "node-a");
    let (b, mut b_rx) = node(dir.path(), "node-b");
    // Through a relay, as through a NAT or a firewall that opens only the
    // main port: B's mailbox sees A's packets from an address that is not
    // the connection's.
    let relay = Relay::start(b.local_addr()).await;
    let to_b = via("node-b", &relay);
    a.send_datagram(&to_b, b"hello").unwrap();
    recv(&mut b_rx, 5 * SECOND).await;
    until_fast(&a, &to_b, &mut b_rx).await;
    let started = Instant::now();
    let mut sent = 0u32;
    while a.snapshot().mailbox_fallbacks == 0 {
        assert!(started.elapsed() < 5 * SECOND, "no mailbox fallback");
        a.send_deferred_datagram(&to_b, &sent.to_be_bytes())
            .unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.uses_mailbox(&id("node-b")), Some(false));
    b.drain_mailbox();
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.drain_mailbox();
    let mut got = 0u32;
    while b_rx.try_recv().is_ok() {
        got += 1;
    }
    // Lost: only those the mailbox refused, the two before the first
    // check (one more if its answer came late).
    let refused = b
        .snapshot()
        .datagram_drops_by_reason
        .iter()
        .find(|(r, _)| *r == DatagramDrop::WrongSource)
        .map_or(0, |(_, n)| *n);
    assert!((2..=3).contains(&refused), "{refused}");
    assert_eq!(u64::from(got), u64::from(sent) - refused);
    // From now on they come through the relay to B's main socket, sealed,
    // and are delivered at once.
    let before = b.snapshot().fast_path_in;
    for i in 0..10u32 {
        a.send_deferred_datagram(&to_b, &i.to_be_bytes()).unwrap();
    }
    assert_eq!(drain(&mut b_rx, SECOND / 2).await.len(), 10);
    assert!(b.snapshot().fast_path_in >= before + 9);
    assert_eq!(a.datagram_path(&id("node-b")), Some(DatagramPath::Fast));
    assert_eq!(a.snapshot().fast_path_fallbacks, 0);
    assert_eq!(a.snapshot().mailbox_fallbacks, 1);
}

#[tokio::test]
async fn a_flooded_mailbox_is_read_on_every_arrival() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, _a_rx) = node(dir.path(), "node-a");
    let (b, mut b_rx) = node(dir.path(), "node-b");
    a.send_datagram(&peer("node-b", &b), b"hello").unwrap();
    recv(&mut b_rx, 5 * SECOND).await;
    until_mailbox(&a, &peer("node-b", &b), &mut b_rx, &b).await;
    // Garbage to the mailbox port from an outsider, more than a drain
    // expects.
    let outsider = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mailbox = std::net::SocketAddr::new(b.local_addr().ip(), b.mailbox_port().unwrap());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..300 {
        let mut p = [0u8; 60];
        rng.fill(&mut p[..]);
        p[0] = 0x01;
        p[1] = 0x01;
        outsider.send_to(&p, mailbox).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(b.drain_mailbox() >= 300);
    let drops: u64 = b
        .snapshot()
        .datagram_drops_by_reason
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert!(drops >= 300, "{drops}");
    // Now heartbeats are delivered without anyone draining.
    for i in 0..5u32 {
        a.send_deferred_datagram(&peer("node-b", &b), &i.to_be_bytes())
            .unwrap();
    }
    let got = drain(&mut b_rx, SECOND / 2).await;
    assert_eq!(got.len(), 5);
    assert!(b_rx.try_recv().is_err());
}
