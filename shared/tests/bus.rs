//! The Redis bus delivers every event to a process that hears everything (the API) and only
//! control events to one that hears control (workers, the scheduler).

use std::time::Duration;

use codex32_shared::bus::redis::RedisBus;
use codex32_shared::bus::{Bus, Event, Hearing};
use codex32_shared::domain::ExecStatus;
use codex32_shared::testing::TestRedis;
use tokio::sync::broadcast::Receiver;
use uuid::Uuid;

async fn next(events: &mut Receiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("the bus is open")
}

/// The next event that is not a (late) `probe`.
async fn past(probe: &Event, events: &mut Receiver<Event>) -> Event {
    loop {
        let e = next(events).await;
        if e != *probe {
            return e;
        }
    }
}

#[tokio::test]
async fn a_control_hearer_gets_control_events_only_and_an_everything_hearer_gets_all() {
    let redis = TestRedis::start();
    let everything = RedisBus::connect(&redis.url, "t", Hearing::Everything)
        .await
        .unwrap();
    let control = RedisBus::connect(&redis.url, "t", Hearing::Control)
        .await
        .unwrap();
    let (mut all, mut ctl) = (everything.subscribe(), control.subscribe());
    let update = Event::ExecutionUpdated {
        id: Uuid::now_v7(),
        bot_id: Uuid::now_v7(),
        owner_id: Uuid::now_v7(),
        status: ExecStatus::Running,
        attempt: 1,
        worker_id: Some("w".into()),
        exit_code: None,
        error: None,
    };
    let cancel = Event::CancelRequested {
        execution_id: Uuid::now_v7(),
    };
    // Subscriptions are made in the background: publish until both hear a control event.
    let probe = Event::DrainRequested {
        worker_id: "probe".into(),
    };
    loop {
        control.publish(&probe).await.unwrap();
        let heard = tokio::time::timeout(Duration::from_millis(200), async {
            (next(&mut ctl).await, next(&mut all).await)
        });
        if heard.await.is_ok() {
            break;
        }
    }
    // A state change, then a control event, published from either side.
    control.publish(&update).await.unwrap();
    everything.publish(&cancel).await.unwrap();
    assert_eq!(past(&probe, &mut all).await, update);
    assert_eq!(next(&mut all).await, cancel);
    assert_eq!(
        past(&probe, &mut ctl).await,
        cancel,
        "the state change is not delivered to a control hearer"
    );
}
