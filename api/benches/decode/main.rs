//! Decoding time of the worst 4 MiB request bodies we know (`shapes.rs`): each must decode, or
//! be rejected, in well under 50 ms on one core. Verdicts are checked by `tests/negative.rs`;
//! this only times them.
//!
//! `cargo bench -p rekor-api --bench decode -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rekor_api::CreateEntryRequest;

mod shapes;

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_4MiB");
    group.sample_size(10);
    for shape in shapes::shapes() {
        // Time only what the tests say each shape gets.
        assert_eq!(
            CreateEntryRequest::from_json(&shape.body).is_ok(),
            shape.expected == shapes::Expected::Accepted,
            "{}",
            shape.name
        );
        group.throughput(Throughput::Bytes(shape.body.len() as u64));
        group.bench_function(shape.name, |b| {
            b.iter(|| CreateEntryRequest::from_json(std::hint::black_box(&shape.body)))
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
