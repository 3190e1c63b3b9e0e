//! The QUIC transport over real sockets on 127.0.0.1: datagrams and
//! messages both ways on one connection, mutual TLS refusals and their
//! counters (CA, cluster, identity, wire version, revocation, hostile
//! names), SPIFFE IDs as cluster URIs, size caps, isolation from dead
//! peers, reconnection after a restart, reloads.

#![allow(clippy::unwrap_used)] // Test helpers: a panic is a failed test.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use phimon_gossip::NodeId;
use phimon_transport::tls::{self, DevCa, IdentityPolicy, IssuedCert, NodeTls, TlsFiles};
use phimon_transport::{
    AuthFailure, Channel, MAX_DATAGRAM, Peer, SendError, Transport, TransportConfig,
};

#[tokio::test]
async fn datagrams_and_messages_flow_both_ways_on_one_connection() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, mut a_rx) = node(dir.path(), "node-a");
    let (b, mut b_rx) = node(dir.path(), "node-b");
    assert_eq!(a.identity().node_id, "node-a");
    assert_eq!(a.max_datagram(), MAX_DATAGRAM);

    // The first send dials; what is sent meanwhile waits in the queue.
    a.send_datagram(&peer("node-b", &b), b"beat-1").unwrap();
    a.send_message(&peer("node-b", &b), b"syn".to_vec())
        .unwrap();
    let mut got = [
        recv(&mut b_rx, Duration::from_secs(5)).await,
        recv(&mut b_rx, Duration::from_secs(5)).await,
    ];
    got.sort_by_key(|r| r.channel == Channel::Message);
    assert_eq!(
        (got[0].channel, &got[0].payload[..]),
        (Channel::Datagram, &b"beat-1"[..])
    );
    assert_eq!(
        (got[1].channel, &got[1].payload[..]),
        (Channel::Message, &b"syn"[..])
    );
    for r in &got {
        assert_eq!(r.node_id, NodeId::from("node-a"));
        assert_eq!(r.remote, a.local_addr(), "sent from the listening socket");
    }

    // node-b answers on node-a's connection, by id alone or with the
    // address: no second connection.
    b.send_datagram(&by_id("node-a"), b"beat-b").unwrap();
    b.send_message(&peer("node-a", &a), b"ack".to_vec())
        .unwrap();
    let mut back = [
        recv(&mut a_rx, Duration::from_secs(5)).await,
        recv(&mut a_rx, Duration::from_secs(5)).await,
    ];
    back.sort_by_key(|r| r.channel == Channel::Message);
    assert_eq!(&back[0].payload[..], b"beat-b");
    assert_eq!(&back[1].payload[..], b"ack");
    assert!(back.iter().all(|r| r.node_id == NodeId::from("node-b")));

    // A burst of heartbeats on the established connection: all arrive
    // on loopback, stamped at reception in order of reading.
    for i in 0..100u32 {
        a.send_datagram(&peer("node-b", &b), &i.to_be_bytes())
            .unwrap();
    }
    let mut last = Instant::now() - Duration::from_secs(1);
    for _ in 0..100 {
        let r = recv(&mut b_rx, Duration::from_secs(5)).await;
        assert_eq!(r.channel, Channel::Datagram);
        assert!(r.received_at >= last);
        last = r.received_at;
    }
    assert!(
        a.flush(Duration::from_secs(5)).await,
        "message acknowledged"
    );
    let (sa, sb) = (a.snapshot(), b.snapshot());
    assert_eq!((sa.datagrams_out, sb.datagrams_in), (101, 101));
    assert_eq!((sa.messages_out, sb.messages_in), (1, 1));
    assert_eq!((sb.datagrams_out, sb.messages_out), (1, 1));
    assert_eq!(sa.auth_failures + sb.auth_failures, 0);
    assert_eq!(sa.send_dropped + sb.send_dropped, 0);
    assert_eq!((sa.connections_open, sb.connections_open), (1, 1));
    assert_eq!(a.connected_nodes(), vec![NodeId::from("node-b")]);

    // No connection and no address: refused at once, counted.
    assert_eq!(
        a.send_datagram(&by_id("node-z"), b"lost"),
        Err(SendError::NotConnected {
            node: "node-z".into()
        })
    );
    assert!(matches!(
        a.send_datagram(&peer("node-b", &b), &[0; MAX_DATAGRAM + 1]),
        Err(SendError::TooLarge { .. })
    ));
    assert!(matches!(
        a.send_message(
            &Peer {
                node_id: None,
                addr: "nowhere".into()
            },
            b"x".to_vec()
        ),
        Err(SendError::BadAddress { .. })
    ));
}

#[tokio::test]
async fn clients_with_bad_certificates_are_refused_counted_and_never_delivered() {
    let dir = pki(&["node-a", "node-b"]);
    let (server, mut inbox) = node(dir.path(), "node-a");
    let (friend, _friend_rx) = node(dir.path(), "node-b");
    let stats = server.stats();
    let real_ca = ca(dir.path());
    let foreign_ca = DevCa::generate("elsewhere", DAY).unwrap();
    let now = SystemTime::now();
    let good = real_ca.issue("node-x", CLUSTER, DAY).unwrap();
    let cases: Vec<(&str, Option<IssuedCert>, &[u8], AuthFailure)> = vec![
        (
            "no certificate",
            None,
            tls::ALPN,
            AuthFailure::NoCertificate,
        ),
        (
            "foreign CA",
            Some(foreign_ca.issue("node-x", CLUSTER, DAY).unwrap()),
            tls::ALPN,
            AuthFailure::UnknownCa,
        ),
        (
            "expired",
            Some(
                real_ca
                    .issue_with_validity("node-x", Some(CLUSTER), now - 10 * DAY, now - DAY)
                    .unwrap(),
            ),
            tls::ALPN,
            AuthFailure::Expired,
        ),
        (
            "other cluster",
            Some(real_ca.issue("node-x", "staging", DAY).unwrap()),
            tls::ALPN,
            AuthFailure::WrongCluster,
        ),
        (
            "no cluster SAN",
            Some(
                real_ca
                    .issue_with_validity("node-x", None, now - DAY, now + DAY)
                    .unwrap(),
            ),
            tls::ALPN,
            AuthFailure::WrongCluster,
        ),
        (
            "old wire version",
            Some(good.clone()),
            b"phimon/2",
            AuthFailure::Version,
        ),
    ];
    for (i, (what, cert, alpn, reason)) in cases.iter().enumerate() {
        let err = rogue_attempt(server.local_addr(), cert.as_ref(), alpn).await;
        assert!(
            matches!(err, quinn::ConnectionError::ConnectionClosed(_)),
            "{what}: closed by the server's TLS alert, got {err:?}"
        );
        eventually(Duration::from_secs(5), what, || {
            stats.auth_failures(*reason) >= 1
        })
        .await;
        assert_eq!(
            stats.auth_failures_total(),
            i as u64 + 1,
            "{what}: counted once"
        );
    }
    // A legitimate message is the first and only thing ever delivered.
    friend
        .send_message(&peer("node-a", &server), b"legit".to_vec())
        .unwrap();
    let m = recv(&mut inbox, Duration::from_secs(5)).await;
    assert_eq!(
        (m.node_id.as_str(), &m.payload[..]),
        ("node-b", &b"legit"[..])
    );
    assert!(
        inbox.try_recv().is_err(),
        "nothing from the refused clients"
    );
    let snap = stats.snapshot();
    assert_eq!(snap.messages_in + snap.datagrams_in, 1);
    assert_eq!(snap.auth_failures, 6);
    assert_eq!(snap.connections_open, 1, "only the friend's connection");
}

#[tokio::test]
async fn a_server_of_another_wire_version_is_refused_and_counted_by_the_dialler() {
    let dir = pki(&["node-a", "node-old"]);
    let old_cert = IssuedCert {
        cert_pem: std::fs::read_to_string(dir.path().join("node-old.pem")).unwrap(),
        key_pem: std::fs::read_to_string(dir.path().join("node-old.key")).unwrap(),
    };
    let old = rogue_server(&old_cert, b"phimon/2");
    let old_addr = old.local_addr().unwrap();
    let accepting = tokio::spawn(async move {
        while let Some(i) = old.accept().await {
            let _ = i.await;
        }
    });
    let (a, _a_rx) = node(dir.path(), "node-a");
    a.send_datagram(&at(old_addr), b"beat").unwrap();
    eventually(Duration::from_secs(5), "version refusal", || {
        a.stats().auth_failures(AuthFailure::Version) == 1
    })
    .await;
    // Backing off: the next sends are dropped, not dialled again.
    a.send_datagram(&at(old_addr), b"beat").unwrap();
    assert_eq!(a.stats().auth_failures(AuthFailure::Version), 1);
    accepting.abort();
}

#[tokio::test]
async fn servers_of_another_cluster_or_identity_are_refused_by_the_sender() {
    let dir = pki(&["node-a", "node-c"]);
    // node-s: same CA, cluster "staging".
    let issued = ca(dir.path()).issue("node-s", "staging", DAY).unwrap();
    std::fs::write(dir.path().join("node-s.pem"), &issued.cert_pem).unwrap();
    std::fs::write(dir.path().join("node-s.key"), &issued.key_pem).unwrap();
    let (a, _a_rx) = node(dir.path(), "node-a");
    let (s, mut s_rx) = Transport::bind(TransportConfig {
        cluster_name: "staging".into(),
        ..config(dir.path(), "node-s")
    })
    .unwrap();
    let (c, mut c_rx) = node(dir.path(), "node-c");
    let stats = a.stats();

    a.send_message(&at(s.local_addr()), b"hello staging".to_vec())
        .unwrap();
    eventually(Duration::from_secs(5), "wrong-cluster refusal", || {
        stats.auth_failures(AuthFailure::WrongCluster) == 1
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), s_rx.recv())
            .await
            .is_err(),
        "nothing reaches the other cluster"
    );

    // node-c's address, but we expect node-x there: dropped and counted.
    let expect_x = Peer {
        node_id: Some(NodeId::from("node-x")),
        addr: c.local_addr().to_string(),
    };
    a.send_message(&expect_x, b"for x".to_vec()).unwrap();
    eventually(Duration::from_secs(5), "identity mismatch", || {
        stats.auth_failures(AuthFailure::IdentityMismatch) == 1
    })
    .await;
    a.send_message(&peer("node-c", &c), b"for c".to_vec())
        .unwrap();
    let m = recv(&mut c_rx, Duration::from_secs(5)).await;
    assert_eq!(&m.payload[..], b"for c");
    // Again for node-x on the now established connection: still refused.
    a.send_datagram(&expect_x, b"beat for x").unwrap();
    assert_eq!(stats.auth_failures(AuthFailure::IdentityMismatch), 2);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), c_rx.recv())
            .await
            .is_err()
    );
}

/// A SPIRE-style SVID for `id` signed by the dev CA in `dir`: the node's
/// DNS name and one SPIFFE ID as the only URI SAN.
fn svid(dir: &std::path::Path, id: &str, spiffe_id: &str) -> IssuedCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let sans = vec![
        rcgen::SanType::DnsName(id.try_into().unwrap()),
        rcgen::SanType::URI(spiffe_id.try_into().unwrap()),
    ];
    IssuedCert {
        cert_pem: issue_raw(dir, sans, &key),
        key_pem: key.serialize_pem(),
    }
}

#[tokio::test]
async fn nodes_with_spiffe_ids_connect_and_other_clusters_svids_are_refused() {
    let dir = pki(&["unused"]);
    for id in ["node-a", "node-b"] {
        let issued = svid(
            dir.path(),
            id,
            &format!("spiffe://example.org/phimon/{CLUSTER}/{id}"),
        );
        std::fs::write(dir.path().join(format!("{id}.pem")), &issued.cert_pem).unwrap();
        std::fs::write(dir.path().join(format!("{id}.key")), &issued.key_pem).unwrap();
    }
    let (a, _a_rx) = node(dir.path(), "node-a");
    let (b, mut b_rx) = node(dir.path(), "node-b");
    assert_eq!(a.identity().cluster.as_deref(), Some(CLUSTER));

    a.send_message(&peer("node-b", &b), b"over spiffe".to_vec())
        .unwrap();
    let m = recv(&mut b_rx, Duration::from_secs(5)).await;
    assert_eq!(
        (m.node_id.as_str(), &m.payload[..]),
        ("node-a", &b"over spiffe"[..])
    );

    // Same CA, but an SVID for cluster staging, and an SVID of another
    // workload that carries a node's DNS name but no /phimon/ path.
    let stats = b.stats();
    let cases = [
        (
            "staging SVID",
            svid(
                dir.path(),
                "node-x",
                "spiffe://example.org/phimon/staging/node-x",
            ),
        ),
        (
            "another workload's SVID",
            svid(
                dir.path(),
                "node-a",
                "spiffe://example.org/ns/default/sa/web",
            ),
        ),
    ];
    for (i, (what, cert)) in cases.iter().enumerate() {
        rogue_attempt(b.local_addr(), Some(cert), tls::ALPN).await;
        eventually(Duration::from_secs(5), what, || {
            stats.auth_failures(AuthFailure::WrongCluster) == i as u64 + 1
        })
        .await;
    }
    assert_eq!(stats.auth_failures_total(), 2);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), b_rx.recv())
            .await
            .is_err(),
        "nothing from the refused clients"
    );
}

#[tokio::test]
async fn oversized_frames_are_refused_and_counted_and_the_connection_survives() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, _a_rx) = Transport::bind(TransportConfig {
        max_message_bytes: 1 << 20,
        ..config(dir.path(), "node-a")
    })
    .unwrap();
    let (b, mut b_rx) = Transport::bind(TransportConfig {
        max_message_bytes: 4096,
        ..config(dir.path(), "node-b")
    })
    .unwrap();

    // Our own cap is enforced before anything is sent.
    assert_eq!(
        b.send_message(&at(a.local_addr()), vec![0; 4097]),
        Err(SendError::TooLarge {
            len: 4097,
            max: 4096
        })
    );

    a.send_message(&peer("node-b", &b), vec![7; 100_000])
        .unwrap();
    eventually(Duration::from_secs(5), "frame_too_large", || {
        b.snapshot().frame_too_large == 1
    })
    .await;
    // Exactly at the cap is fine, on the same connection.
    a.send_message(&peer("node-b", &b), vec![1; 4096]).unwrap();
    let m = recv(&mut b_rx, Duration::from_secs(5)).await;
    assert_eq!(m.payload.len(), 4096);
    a.send_datagram(&peer("node-b", &b), &[2; MAX_DATAGRAM])
        .unwrap();
    let d = recv(&mut b_rx, Duration::from_secs(5)).await;
    assert_eq!(
        (d.channel, d.payload.len()),
        (Channel::Datagram, MAX_DATAGRAM)
    );
    assert!(
        b_rx.try_recv().is_err(),
        "the oversized frame was not delivered"
    );
    assert_eq!(b.snapshot().messages_in, 1);
    assert_eq!(a.snapshot().connections_open, 1);
}

#[tokio::test]
async fn dead_peers_do_not_delay_delivery_to_live_ones() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, _a_rx) = node(dir.path(), "node-a");
    let (b, mut b_rx) = node(dir.path(), "node-b");
    // A socket that swallows every packet (a hung host) and a port with
    // nobody behind it (a dead process).
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let connect_timeout = a.config().connect_timeout;
    let dead = [
        at(black_hole.local_addr().unwrap()),
        at(dead_port),
        Peer {
            node_id: None,
            addr: "no-such-host.invalid:7800".into(),
        },
    ];
    for round in 0..5u8 {
        for p in &dead {
            a.send_datagram(p, &[round; 64]).unwrap();
            a.send_message(p, vec![round; 512]).unwrap();
        }
    }
    let started = Instant::now();
    a.send_datagram(&peer("node-b", &b), b"alive").unwrap();
    let m = recv(&mut b_rx, connect_timeout).await;
    let latency = started.elapsed();
    assert_eq!(&m.payload[..], b"alive");
    assert!(
        latency < connect_timeout / 4,
        "live peer waited {latency:?} behind dead ones"
    );
    // The dead peers' queues are dropped and counted once their dials
    // fail; nothing hoards them, and flush settles.
    eventually(connect_timeout * 3, "dead peers' traffic dropped", || {
        a.snapshot().send_dropped >= 30
    })
    .await;
    assert!(a.flush(Duration::from_secs(1)).await);
}

#[tokio::test]
async fn a_peer_restarted_on_the_same_port_is_reached_again_at_once() {
    let dir = pki(&["node-a", "node-b"]);
    // A long idle timeout: only the stateless reset (derived from node-b's
    // key, so the restarted process sends a valid one) can make node-a
    // notice the restart quickly.
    let slow = |id| TransportConfig {
        idle_timeout: Duration::from_secs(60),
        ..config(dir.path(), id)
    };
    let (a, _a_rx) = Transport::bind(slow("node-a")).unwrap();

    // node-b lives on its own runtime so that it can die without sending
    // anything, as a killed process would.
    let b_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (b, mut b_rx) = {
        let _enter = b_runtime.enter();
        Transport::bind(slow("node-b")).unwrap()
    };
    let b_addr = b.local_addr();
    let to_b = Peer {
        node_id: Some(NodeId::from("node-b")),
        addr: b_addr.to_string(),
    };
    a.send_datagram(&to_b, b"before").unwrap();
    assert_eq!(
        &recv(&mut b_rx, Duration::from_secs(5)).await.payload[..],
        b"before"
    );

    // Kill: stop its tasks first so the endpoint cannot send a close.
    b_runtime.shutdown_background();
    drop(b);
    drop(b_rx);

    // Restart on the same port (the old socket is released once the
    // dropped tasks let go of it).
    let mut restarted = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while restarted.is_none() {
        match Transport::bind(TransportConfig {
            listen: b_addr,
            ..slow("node-b")
        }) {
            Ok(t) => restarted = Some(t),
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot rebind {b_addr}: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let (_b2, mut b2_rx) = restarted.unwrap();
    let started = Instant::now();
    let mut sent = 0u32;
    let got = loop {
        a.send_datagram(&to_b, &sent.to_be_bytes()).unwrap();
        sent += 1;
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(50), b2_rx.recv()).await {
            break m;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "restarted peer not reached within 3 s ({sent} heartbeats sent)"
        );
    };
    assert_eq!(got.node_id, NodeId::from("node-a"));
}

#[tokio::test]
async fn reload_swaps_certificates_and_keeps_the_old_ones_on_error() {
    let dir = pki(&["node-a", "node-b"]);
    let (a, _a_rx) = node(dir.path(), "node-a");
    let (b, mut b_rx) = node(dir.path(), "node-b");
    assert!(!b.reload_certs_if_changed().unwrap(), "nothing changed yet");
    let before = b.cert_not_after();
    let signer_before = b.record_signer();

    // Re-issue node-b for longer; the running process picks it up.
    let issued = ca(dir.path()).issue("node-b", CLUSTER, 5 * DAY).unwrap();
    std::fs::write(dir.path().join("node-b.pem"), &issued.cert_pem).unwrap();
    std::fs::write(dir.path().join("node-b.key"), &issued.key_pem).unwrap();
    assert!(b.reload_certs_if_changed().unwrap());
    assert!(b.cert_not_after() > before);
    assert_ne!(
        b.record_signer().chain()[0],
        signer_before.chain()[0],
        "the signer follows the new certificate"
    );

    a.send_message(&peer("node-b", &b), b"after reload".to_vec())
        .unwrap();
    assert_eq!(
        &recv(&mut b_rx, Duration::from_secs(5)).await.payload[..],
        b"after reload"
    );

    // A certificate for another node is refused and the old one stays.
    let other = ca(dir.path()).issue("node-z", CLUSTER, DAY).unwrap();
    std::fs::write(dir.path().join("node-b.pem"), &other.cert_pem).unwrap();
    std::fs::write(dir.path().join("node-b.key"), &other.key_pem).unwrap();
    let err = b.reload_certs().unwrap_err();
    assert!(err.to_string().contains("node-z"), "{err}");
    assert_eq!(b.identity().node_id, "node-b");
    // Garbage is refused with its path, never a panic.
    std::fs::write(dir.path().join("node-b.pem"), b"garbage").unwrap();
    let err = b.reload_certs().unwrap_err();
    assert!(err.to_string().contains("node-b.pem"), "{err}");
    assert_eq!(b.identity().node_id, "node-b");
}

#[tokio::test]
async fn a_sender_refused_by_its_peer_counts_it_and_a_ca_rotation_lets_it_in() {
    let dir = pki(&["node-a", "node-b"]);
    // node-n holds a certificate from a new CA and trusts both CAs, as in
    // the middle of a CA rotation; node-b still trusts only the old one.
    let new_ca = DevCa::generate("new", DAY).unwrap();
    let issued = new_ca.issue("node-n", CLUSTER, DAY).unwrap();
    std::fs::write(dir.path().join("node-n.pem"), &issued.cert_pem).unwrap();
    std::fs::write(dir.path().join("node-n.key"), &issued.key_pem).unwrap();
    let old_ca_pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let both = format!("{old_ca_pem}{}", new_ca.cert_pem());
    std::fs::write(dir.path().join("both-cas.pem"), &both).unwrap();
    let (n, _n_rx) = Transport::bind(TransportConfig {
        ca_pem_path: dir.path().join("both-cas.pem"),
        ..config(dir.path(), "node-n")
    })
    .unwrap();
    let b_ca = dir.path().join("b-ca.pem");
    std::fs::write(&b_ca, &old_ca_pem).unwrap();
    let (b, mut b_rx) = Transport::bind(TransportConfig {
        ca_pem_path: b_ca.clone(),
        ..config(dir.path(), "node-b")
    })
    .unwrap();

    n.send_message(&peer("node-b", &b), b"refused".to_vec())
        .unwrap();
    eventually(Duration::from_secs(5), "node-b refusing node-n", || {
        b.stats().auth_failures(AuthFailure::UnknownCa) == 1
    })
    .await;
    // node-n learns of it from the close that follows its handshake.
    eventually(
        Duration::from_secs(5),
        "node-n counting the refusal",
        || n.snapshot().handshake_failures >= 1,
    )
    .await;
    assert!(b_rx.try_recv().is_err());

    // Step 1 of a CA rotation on node-b: trust both CAs, reload.
    std::fs::write(&b_ca, &both).unwrap();
    assert!(b.reload_certs_if_changed().unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    let m = loop {
        let _ = n.send_message(&peer("node-b", &b), b"rotated".to_vec());
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), b_rx.recv()).await {
            break m;
        }
        assert!(Instant::now() < deadline, "node-n never got in");
    };
    assert_eq!(m.node_id, NodeId::from("node-n"));

    // Step back: node-b drops the new CA again. The established connection
    // of node-n no longer verifies and is closed by the reload.
    std::fs::write(&b_ca, &old_ca_pem).unwrap();
    assert!(b.reload_certs_if_changed().unwrap());
    assert_eq!(b.snapshot().closed_on_reload, 1);
    eventually(Duration::from_secs(5), "node-n's connection closed", || {
        n.snapshot().connections_open == 0
    })
    .await;
}

#[tokio::test]
async fn a_revoked_peer_is_cut_off_on_reload_and_refused_afterwards() {
    let dir = pki(&["node-a", "node-b", "node-c"]);
    let crl_path = dir.path().join("ca.crl");
    std::fs::write(&crl_path, crl_pem(dir.path(), &[])).unwrap();
    let with_crl = |id| TransportConfig {
        crl_pem_path: Some(crl_path.clone()),
        ..config(dir.path(), id)
    };
    let (a, mut a_rx) = Transport::bind(with_crl("node-a")).unwrap();
    let (b, _b_rx) = Transport::bind(with_crl("node-b")).unwrap();
    let (c, _c_rx) = Transport::bind(with_crl("node-c")).unwrap();
    b.send_datagram(&peer("node-a", &a), b"b").unwrap();
    c.send_datagram(&peer("node-a", &a), b"c").unwrap();
    recv(&mut a_rx, Duration::from_secs(5)).await;
    recv(&mut a_rx, Duration::from_secs(5)).await;
    assert_eq!(a.snapshot().connections_open, 2);

    // node-b's key leaked: the CA revokes its certificate.
    let b_pem = std::fs::read_to_string(dir.path().join("node-b.pem")).unwrap();
    std::fs::write(&crl_path, crl_pem(dir.path(), &[&b_pem])).unwrap();
    assert!(a.reload_certs_if_changed().unwrap());
    let s = a.snapshot();
    assert_eq!(s.closed_on_reload, 1, "only node-b's connection: {s:?}");
    eventually(Duration::from_secs(5), "node-b's connection gone", || {
        a.snapshot().connections_open == 1
    })
    .await;
    assert_eq!(a.connected_nodes(), vec![NodeId::from("node-c")]);
    assert_eq!(a.stats().auth_failures(AuthFailure::Revoked), 1);

    // node-b cannot come back in, in either direction.
    eventually(Duration::from_secs(5), "node-b sees the close", || {
        b.snapshot().connections_open == 0
    })
    .await;
    b.send_datagram(&peer("node-a", &a), b"again").unwrap();
    eventually(Duration::from_secs(5), "node-b refused on dial-in", || {
        a.stats().auth_failures(AuthFailure::Revoked) == 2
    })
    .await;
    a.send_datagram(&peer("node-b", &b), b"to b").unwrap();
    eventually(Duration::from_secs(5), "node-b refused on dial-out", || {
        a.stats().auth_failures(AuthFailure::Revoked) == 3
    })
    .await;
    // A node whose own certificate is revoked does not start.
    let err = Transport::bind(with_crl("node-b")).unwrap_err().to_string();
    assert!(err.contains("not acceptable to peers"), "{err}");
    // node-c is untouched.
    c.send_datagram(&peer("node-a", &a), b"still here").unwrap();
    let r = recv(&mut a_rx, Duration::from_secs(5)).await;
    assert_eq!(r.node_id, NodeId::from("node-c"));
}

/// DER of a subjectAltName extension value (short names only).
fn san_der(dns: &[&str], uris: &[&str]) -> Vec<u8> {
    let mut names = Vec::new();
    for (tag, s) in dns
        .iter()
        .map(|d| (0x82u8, d))
        .chain(uris.iter().map(|u| (0x86u8, u)))
    {
        names.push(tag);
        names.push(s.len() as u8);
        names.extend_from_slice(s.as_bytes());
    }
    let mut der = vec![0x30, names.len() as u8];
    der.extend(names);
    der
}

/// A certificate signed by the dev CA in `dir` whose subjectAltName
/// extension is `san` verbatim.
fn issue_with_san_extension(dir: &std::path::Path, san: Vec<u8>, key: &rcgen::KeyPair) -> String {
    let mut p = rcgen::CertificateParams::default();
    p.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        &[2, 5, 29, 17],
        san,
    )];
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = SystemTime::now();
    p.not_before = (now - Duration::from_secs(3600)).into();
    p.not_after = (now + DAY).into();
    p.signed_by(key, &issuer(dir)).unwrap().pem()
}

/// A CRL of the dev CA in `dir` listing the certificates `revoked` (PEM).
fn crl_pem(dir: &std::path::Path, revoked: &[&str]) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let now = SystemTime::now();
    let revoked_certs = revoked
        .iter()
        .map(|pem| {
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
            rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(x.raw_serial()),
                revocation_time: now.into(),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            }
        })
        .collect();
    let params = rcgen::CertificateRevocationListParams {
        this_update: (now - Duration::from_secs(60)).into(),
        next_update: (now + DAY).into(),
        crl_number: rcgen::SerialNumber::from_slice(&[revoked.len() as u8 + 1]),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    params.signed_by(&issuer(dir)).unwrap().pem().unwrap()
}

#[tokio::test]
async fn a_certificate_with_a_hostile_name_is_refused_without_panic() {
    let dir = pki(&["node-a"]);
    let (server, mut inbox) = node(dir.path(), "node-a");
    let key = rcgen::KeyPair::generate().unwrap();
    // rcgen refuses non-ASCII IA5 strings, so the SAN extension is written
    // by hand: GeneralNames with a dNSName [2] and a URI [6].
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "non-ASCII URI scheme",
            san_der(&["c"], &["phimoé://prod/c"]),
        ),
        ("non-ASCII node id", san_der(&["cé"], &["phimon://prod/cé"])),
        (
            "markup in the id",
            san_der(&["<!channel>"], &["phimon://prod/<!channel>"]),
        ),
        ("newline in the id", san_der(&["a\nb"], &[])),
    ];
    for (i, (what, sans)) in hostile.into_iter().enumerate() {
        let cert_pem = issue_with_san_extension(dir.path(), sans, &key);
        let der = rustls::pki_types::CertificateDer::from(
            rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
                .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
                .unwrap(),
        );
        // Parsing the identity is total; the policy refuses it (the first
        // case reads as a certificate without a cluster URI).
        let _ = tls::identity_from_cert(&der);
        assert!(IdentityPolicy::new(CLUSTER).check(&der).is_err(), "{what}");
        // As a node's own certificate: a clear error at load.
        let id = format!("hostile-{i}");
        std::fs::write(dir.path().join(format!("{id}.pem")), &cert_pem).unwrap();
        std::fs::write(dir.path().join(format!("{id}.key")), key.serialize_pem()).unwrap();
        let files = TlsFiles {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join(format!("{id}.pem")),
            key: dir.path().join(format!("{id}.key")),
            crl: None,
        };
        let err = NodeTls::load(&files, &IdentityPolicy::new(CLUSTER), None).unwrap_err();
        assert!(
            err.to_string().contains(&format!("{id}.pem")),
            "{what}: {err}"
        );
        // As a peer's: refused and counted, the node keeps running.
        let issued = IssuedCert {
            cert_pem,
            key_pem: key.serialize_pem(),
        };
        rogue_attempt(server.local_addr(), Some(&issued), tls::ALPN).await;
        eventually(Duration::from_secs(5), what, || {
            server.stats().auth_failures_total() == i as u64 + 1
        })
        .await;
    }
    assert!(inbox.try_recv().is_err());
    let s = server.stats();
    assert_eq!(s.auth_failures(AuthFailure::WrongCluster), 1);
    assert_eq!(s.auth_failures(AuthFailure::BadCertificate), 3);
}

#[tokio::test]
async fn bad_tls_files_fail_at_bind_with_the_path() {
    let dir = pki(&["node-a"]);
    let missing = TransportConfig {
        cert_pem_path: PathBuf::from("/nonexistent/node.pem"),
        ..config(dir.path(), "node-a")
    };
    let err = Transport::bind(missing).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/node.pem"), "{err}");
    let wrong_id = TransportConfig {
        node_id: Some("node-q".into()),
        ..config(dir.path(), "node-a")
    };
    let err = Transport::bind(wrong_id).unwrap_err().to_string();
    assert!(err.contains("node-q") && err.contains("node-a"), "{err}");
    let foreign = tempfile::tempdir().unwrap();
    phimon_transport::tls::generate_dev_certs(foreign.path(), CLUSTER, &["node-a".into()], 1)
        .unwrap();
    let wrong_ca = TransportConfig {
        ca_pem_path: foreign.path().join("ca.pem"),
        ..config(dir.path(), "node-a")
    };
    let err = Transport::bind(wrong_ca).unwrap_err().to_string();
    assert!(err.contains("not acceptable to peers"), "{err}");
    let bad_crl = TransportConfig {
        crl_pem_path: Some(dir.path().join("ca.pem")),
        ..config(dir.path(), "node-a")
    };
    let err = Transport::bind(bad_crl).unwrap_err().to_string();
    assert!(err.contains("CRL"), "{err}");
}
