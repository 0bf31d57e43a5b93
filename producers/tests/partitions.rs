//! A partitioned stream on real nats-servers configured (or not) with the subject mapping:
//! producers publish on the four-token subjects, the servers map them into the partition
//! runledger computes, the stream stores only mapped subjects, the mapping check proves it (and
//! names what is missing when it is not so), and the partition count is fixed at setup.

use chrono::Utc;
use events::{agent::AgentRegistered, AgentId, AgentStatus, CompanyId, Event, EventData, Subjects};
use producers::{
    check_partition_mapping, ensure_stream, Publisher, PublisherSettings, StreamSettings,
};
use std::time::Duration;
use testsupport::{PrivateNats, TestStream};

fn subjects(prefix: &str, partitions: u32) -> Subjects {
    Subjects::new(prefix)
        .unwrap()
        .partitioned(partitions)
        .unwrap()
}

fn settings(ts: &TestStream, subjects: &Subjects) -> StreamSettings {
    StreamSettings {
        name: ts.stream.clone(),
        subjects: subjects.clone(),
        duplicate_window: Duration::from_secs(120),
        replicas: 1,
    }
}

fn registered(company: CompanyId) -> Event {
    Event::new(
        company,
        "test",
        Utc::now(),
        EventData::AgentRegistered(AgentRegistered {
            agent_id: AgentId::new_random(),
            name: "a".into(),
            role: "engineer".into(),
            adapter_type: "codex_local".into(),
            adapter_config: Default::default(),
            status: AgentStatus::Idle,
            extra: Default::default(),
        }),
    )
}

/// A private server mapping `prefix` into `partitions`, and a test stream on it.
async fn mapped(partitions: u32) -> (PrivateNats, TestStream) {
    let probe = TestStream::new().await.unwrap();
    let mapping = subjects(&probe.prefix, partitions).mapping().unwrap();
    let server = PrivateNats::start(1, &[mapping]).await.unwrap();
    let mut ts = TestStream::on(&server.node_url(0)).await.unwrap();
    // The mapping was written for the first stream's prefix.
    ts.prefix = probe.prefix.clone();
    (server, ts)
}

#[tokio::test]
async fn mapped_publishes_land_in_the_partition_runledger_computes() {
    let (_server, ts) = mapped(8).await;
    let subjects = subjects(&ts.prefix, 8);
    let js = ts.jetstream();
    ensure_stream(&js, &settings(&ts, &subjects)).await.unwrap();
    check_partition_mapping(&ts.client, &subjects)
        .await
        .unwrap();
    let mut stream = js.get_stream(&ts.stream).await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        0,
        "the probes are not stored"
    );
    let publisher = Publisher::new(js.clone(), subjects.clone(), PublisherSettings::default());
    let events: Vec<Event> = (0..40)
        .map(|_| registered(CompanyId::new_random()))
        .collect();
    for (event, result) in events.iter().zip(publisher.publish_all(&events).await) {
        let sequence = result.unwrap().sequence;
        let stored = stream.get_raw_message(sequence).await.unwrap();
        assert_eq!(stored.subject.as_str(), subjects.stored(event));
        assert!(subjects.is_subject_of(event, &stored.subject));
        assert!(!subjects.is_subject_of(event, &subjects.of(event)));
    }
    let partitions: std::collections::BTreeSet<u32> = events
        .iter()
        .map(|e| subjects.partition_of(e.company_id))
        .collect();
    assert!(partitions.len() > 4, "companies spread: {partitions:?}");
}

#[tokio::test]
async fn a_server_without_the_mapping_is_refused_with_what_to_configure() {
    let server = PrivateNats::start(1, &[]).await.unwrap();
    let ts = TestStream::on(&server.node_url(0)).await.unwrap();
    let subjects = subjects(&ts.prefix, 8);
    let js = ts.jetstream();
    ensure_stream(&js, &settings(&ts, &subjects)).await.unwrap();
    let error = check_partition_mapping(&ts.client, &subjects)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("was not mapped"), "{error}");
    assert!(
        error.contains(&format!("mappings = {{ \"{}.*.*.*\"", ts.prefix)),
        "{error}"
    );
    // Unmapped, a publish finds no stream: it fails instead of being stored unpartitioned.
    let publisher = Publisher::new(js, subjects.clone(), PublisherSettings::default());
    assert!(publisher
        .publish(&registered(CompanyId::new_random()))
        .await
        .is_err());
}

#[tokio::test]
async fn a_mapping_with_another_partition_count_is_refused() {
    let (_server, ts) = mapped(4).await;
    let subjects = subjects(&ts.prefix, 8);
    let error = check_partition_mapping(&ts.client, &subjects)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("another partition count"), "{error}");
}

#[tokio::test]
async fn the_partition_count_is_fixed_when_the_stream_is_set_up() {
    let ts = TestStream::new().await.unwrap();
    let js = ts.jetstream();
    ensure_stream(&js, &settings(&ts, &subjects(&ts.prefix, 8)))
        .await
        .unwrap();
    ensure_stream(&js, &settings(&ts, &subjects(&ts.prefix, 8)))
        .await
        .unwrap();
    for other in [1, 4] {
        let error = ensure_stream(&js, &settings(&ts, &subjects(&ts.prefix, other)))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("set up with 8 partition(s)")
                && error.contains("RUNLEDGER_PARTITIONS=8"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn three_replicas_need_a_cluster() {
    let ts = TestStream::new().await.unwrap();
    let mut asked = settings(&ts, &Subjects::new(&ts.prefix).unwrap());
    asked.replicas = 3;
    assert!(ensure_stream(&ts.jetstream(), &asked).await.is_err());
    let cluster = PrivateNats::start(3, &[]).await.unwrap();
    let ts = TestStream::on(&cluster.url()).await.unwrap();
    let mut asked = settings(&ts, &Subjects::new(&ts.prefix).unwrap());
    asked.replicas = 3;
    let info = ensure_stream(&ts.jetstream(), &asked).await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
}
