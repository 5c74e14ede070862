use super::*;
use proptest::prelude::*;
use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
use rml_rtmp::messages::MessagePayload;
use rml_rtmp::time::RtmpTimestamp;

/// What nginx-rtmp 1.2 sent a player of `live/cap` (chunk_size 4096):
/// everything after the handshake for 3 s of a 160x120 15 fps H.264 + AAC
/// stream (window, peer bandwidth, chunk size, `_result`s, `onStatus`es,
/// `|RtmpSampleAccess`, `onMetaData`, sequence headers and media).
const NGINX_PLAY: &[u8] = include_bytes!("../../../../tests/fixtures/rtmp/nginx-play-160x120.bin");

fn parse_all(state: &mut ChunkState, bytes: &[u8]) -> Vec<Message> {
    state.push(bytes);
    let mut v = Vec::new();
    while let Some(m) = state.next_message().expect("valid chunks") {
        v.push(m);
    }
    v
}

/// rml's deserializer as the reference (chunk size applied as its session
/// does).
fn rml_parse(bytes: &[u8]) -> Vec<Message> {
    let mut d = ChunkDeserializer::new();
    let mut v = Vec::new();
    let mut input: &[u8] = bytes;
    while let Some(p) = d.get_next_message(input).expect("rml parses it") {
        input = &[];
        if p.type_id == TYPE_SET_CHUNK_SIZE {
            let n = u32::from_be_bytes([p.data[0], p.data[1], p.data[2], p.data[3]]);
            d.set_max_chunk_size(n as usize).unwrap();
        }
        v.push(Message {
            type_id: p.type_id,
            stream_id: p.message_stream_id,
            timestamp: p.timestamp.value,
            data: p.data,
        });
    }
    v
}

#[test]
fn nginx_bytes_parse_as_rml_parses_them() {
    let ours = parse_all(&mut ChunkState::default(), NGINX_PLAY);
    assert_eq!(ours, rml_parse(NGINX_PLAY));
    let video = ours.iter().filter(|m| m.type_id == 9).count();
    let audio = ours.iter().filter(|m| m.type_id == 8).count();
    // 3 s at 15 fps, AAC at 44.1 kHz (~43 frames/s).
    assert!(video >= 30 && audio >= 80, "{video} video, {audio} audio");
    // Media timestamps never go backwards within a kind.
    for kind in [8, 9] {
        let ts: Vec<u32> = ours
            .iter()
            .filter(|m| m.type_id == kind)
            .map(|m| m.timestamp)
            .collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{kind}: {ts:?}");
    }
}

/// Cut anywhere (mid-header, mid-message), written down as the hand-over
/// writes it, read back, and go on: the same messages as in one go.
#[test]
fn nginx_bytes_resume_from_a_carried_state_at_every_cut() {
    let whole = parse_all(&mut ChunkState::default(), NGINX_PLAY);
    // Every byte of the set-up, then a stride through the media.
    let cuts = (0..2000).chain((2000..NGINX_PLAY.len()).step_by(97));
    for cut in cuts {
        let mut a = ChunkState::default();
        let mut got = parse_all(&mut a, &NGINX_PLAY[..cut]);
        let text = serde_json::to_string(&a).unwrap();
        let mut b: ChunkState = serde_json::from_str(&text).unwrap();
        assert_eq!(a, b);
        got.extend(parse_all(&mut b, &NGINX_PLAY[cut..]));
        assert_eq!(got.len(), whole.len(), "cut at {cut}");
        assert!(got == whole, "cut at {cut}");
        assert_eq!(b.received, NGINX_PLAY.len() as u64);
    }
}

#[test]
fn acknowledgements_follow_the_window() {
    let mut s = ChunkState::default();
    // Window acknowledgement size 1000.
    let mut bytes = Vec::new();
    let win = Message {
        type_id: TYPE_WINDOW_ACK_SIZE,
        stream_id: 0,
        timestamp: 0,
        data: Bytes::copy_from_slice(&1000u32.to_be_bytes()),
    };
    encode(2, &win, DEFAULT_CHUNK_SIZE, &mut bytes);
    let media = Message {
        type_id: 9,
        stream_id: 1,
        timestamp: 5,
        data: Bytes::from(vec![0x17; 600]),
    };
    encode(6, &media, DEFAULT_CHUNK_SIZE, &mut bytes);
    let n = parse_all(&mut s, &bytes).len();
    assert_eq!(n, 2);
    assert_eq!(s.window, 1000);
    assert_eq!(s.ack_due(), None, "{} bytes so far", s.received);
    let mut more = Vec::new();
    encode(6, &media, DEFAULT_CHUNK_SIZE, &mut more);
    parse_all(&mut s, &more);
    let seq = s.ack_due().expect("a window's worth came in");
    assert_eq!(u64::from(seq), s.received);
    assert_eq!(s.ack_due(), None, "acknowledged once");
    // The acknowledgement itself is a well-formed message.
    let mut peer = ChunkState::default();
    let acks = parse_all(&mut peer, &ack(seq));
    assert_eq!(acks[0].type_id, TYPE_ACK);
    assert_eq!(acks[0].data.as_ref(), seq.to_be_bytes());
}

#[test]
fn a_ping_gets_its_pong() {
    let pong = answer_user_control(&[0, 6, 0, 0, 0x12, 0x34]).expect("answered");
    let mut peer = ChunkState::default();
    let m = parse_all(&mut peer, &pong);
    assert_eq!(m[0].type_id, TYPE_USER_CONTROL);
    assert_eq!(m[0].data.as_ref(), [0, 7, 0, 0, 0x12, 0x34]);
    // Stream begin (event 0) and short bodies want no answer.
    assert!(answer_user_control(&[0, 0, 0, 0, 0, 1]).is_none());
    assert!(answer_user_control(&[0, 6]).is_none());
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    // A type-1 header on a chunk stream never seen.
    let mut s = ChunkState::default();
    s.push(&[0x43, 0, 0, 0, 0, 0, 4, 9]);
    assert_eq!(
        s.next_message(),
        Err(ChunkError::NoPreviousHeader { csid: 3 })
    );
    // A chunk size of 0.
    let mut s = ChunkState::default();
    let mut b = Vec::new();
    let m = Message {
        type_id: TYPE_SET_CHUNK_SIZE,
        stream_id: 0,
        timestamp: 0,
        data: Bytes::copy_from_slice(&0u32.to_be_bytes()),
    };
    encode(2, &m, DEFAULT_CHUNK_SIZE, &mut b);
    s.push(&b);
    assert_eq!(s.next_message(), Err(ChunkError::BadChunkSize(0)));
}

#[derive(Debug, Clone)]
struct Msg {
    type_id: u8,
    delta: u32,
    len: usize,
    seed: u8,
}

fn msgs() -> impl Strategy<Value = Vec<Msg>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![8u8, 9, 18, 20]),
            prop_oneof![
                Just(0u32),
                0u32..100,
                Just(0x00ff_ffff),
                0x0100_0000u32..0x0200_0000
            ],
            // (rml sends no chunk at all for an empty message)
            prop_oneof![1usize..10, 100usize..400, 3000usize..9000],
            any::<u8>(),
        )
            .prop_map(|(type_id, delta, len, seed)| Msg {
                type_id,
                delta,
                len,
                seed,
            }),
        1..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// rml's serializer (compressed headers: types 1-3, extended
    /// timestamps, a chunk size set mid-stream), the bytes split anywhere
    /// and the state carried at one split: the same messages come out.
    #[test]
    fn any_chunking_and_any_carry_point_give_the_same_messages(
        list in msgs(),
        chunk_size in prop::sample::select(vec![128u32, 129, 1000, 4096, 65536]),
        splits in prop::collection::vec(0usize..5000, 0..30),
        carry_at in 0usize..30,
    ) {
        let mut ser = ChunkSerializer::new();
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        let mut ts = 0u32;
        let set = ser.set_max_chunk_size(chunk_size, RtmpTimestamp::new(0)).unwrap();
        bytes.extend_from_slice(&set.bytes);
        want.push(Message {
            type_id: TYPE_SET_CHUNK_SIZE,
            stream_id: 0,
            timestamp: 0,
            data: Bytes::copy_from_slice(&chunk_size.to_be_bytes()),
        });
        for m in &list {
            ts = ts.wrapping_add(m.delta);
            let data: Vec<u8> = (0..m.len).map(|i| (i as u8).wrapping_mul(m.seed)).collect();
            let p = MessagePayload {
                timestamp: RtmpTimestamp::new(ts),
                type_id: m.type_id,
                message_stream_id: 1,
                data: Bytes::from(data),
            };
            bytes.extend_from_slice(&ser.serialize(&p, false, false).unwrap().bytes);
            want.push(Message { type_id: p.type_id, stream_id: 1, timestamp: ts, data: p.data });
        }
        let mut cuts: Vec<usize> = splits.iter().map(|s| s % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(bytes.len());
        let mut state = ChunkState::default();
        let mut got = Vec::new();
        let mut from = 0;
        for (n, cut) in cuts.into_iter().enumerate() {
            got.extend(parse_all(&mut state, &bytes[from..cut]));
            from = cut;
            if n == carry_at {
                let text = serde_json::to_string(&state).unwrap();
                state = serde_json::from_str(&text).unwrap();
            }
        }
        prop_assert_eq!(state.received, bytes.len() as u64);
        prop_assert!(state.at_boundary());
        prop_assert_eq!(got, want);
    }
}
