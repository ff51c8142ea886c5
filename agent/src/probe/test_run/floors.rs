//! The benchmark's floor programs (`[probe] benchmark`) pass the verifier
//! and do what `cargo xtask bench kernel` reads them as: every program of
//! both benchmark configurations loads and attaches (tracepoints; the TC
//! programs are loaded, there is no interface here), and the one-insert-
//! per-SYN classifier inserts on a client SYN and its partner deletes on the
//! client's RST.

use super::*;
use crate::config::BenchPrograms;
use crate::probe::loader::{TC_EMPTY, TC_EMPTY_EGRESS, TC_SYN_FORGET, TC_SYN_UPDATE};

fn bench_table(ebpf: &Ebpf) -> Vec<(AttemptKey, Attempt)> {
    let map = ebpf.map(names::BENCH_SYNS).unwrap();
    let map: BpfHashMap<_, AttemptKey, Attempt> = BpfHashMap::try_from(map).unwrap();
    map.iter().map(Result::unwrap).collect()
}

fn run(ebpf: &Ebpf, program: &str, frame: &[u8]) {
    let prog: &SchedClassifier = ebpf.program(program).unwrap().try_into().unwrap();
    let res = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        })
        .unwrap();
    assert_eq!(
        res.return_value, NEXT,
        "{program} changed the packet's fate"
    );
}

#[test]
fn benchmark_programs_load_and_the_syn_floor_inserts_then_deletes() {
    for benchmark in [BenchPrograms::Empty, BenchPrograms::Floors] {
        let config = ProbeConfig {
            benchmark,
            ..ProbeConfig::default()
        };
        let (loaded, _) = loader::load(&config, &[WATCHED], &[]).expect("load (root needed)");
        if benchmark == BenchPrograms::Empty {
            for program in [TC_EMPTY, TC_EMPTY_EGRESS] {
                run(
                    &loaded.ebpf,
                    program,
                    &v4(C4, S4, 6, 0, &tcp(1, WATCHED, 1, SYN)),
                );
            }
            continue;
        }
        let ebpf = &loaded.ebpf;
        let syn = v4(C4, S4, 6, 0, &tcp(40100, WATCHED, 77, SYN));
        let data = v4(C4, S4, 6, 0, &tcp(40100, WATCHED, 78, ACK | PSH));
        let rst = v4(C4, S4, 6, 0, &tcp(40100, WATCHED, 78, RST | ACK));
        let other = v4(C4, S4, 6, 0, &tcp(40101, WATCHED + 1, 5, SYN));
        for frame in [&syn, &data, &other] {
            run(ebpf, TC_SYN_UPDATE, frame);
            run(ebpf, TC_SYN_FORGET, frame);
        }
        let table = bench_table(ebpf);
        assert_eq!(table.len(), 1, "{table:?}");
        assert_eq!((table[0].0, table[0].1.isn), (key4(40100), 77));
        run(ebpf, TC_SYN_UPDATE, &rst);
        assert_eq!(bench_table(ebpf).len(), 1);
        run(ebpf, TC_SYN_FORGET, &rst);
        assert!(bench_table(ebpf).is_empty());
    }
}
