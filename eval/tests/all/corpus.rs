//! The committed corpus under `traces/` is exactly what the generator
//! makes, so `eval --compare` results can be reproduced bit for bit.
#![cfg(feature = "corpus")]

use phimon_eval::corpus::CorpusSet;
use std::path::Path;

#[test]
fn committed_corpus_is_what_the_generator_makes() {
    let traces = Path::new(env!("CARGO_MANIFEST_DIR")).join("../traces");
    let files = CorpusSet::Corpus.render();
    assert!(files.len() >= 10, "only {} generated traces", files.len());
    for (name, fresh) in files {
        let committed = std::fs::read_to_string(traces.join(&name))
            .unwrap_or_else(|e| panic!("traces/{name} is not committed: {e}"));
        assert!(
            fresh == committed,
            "traces/{name} differs from the generator; regenerate it with \
             `cargo run -p phimon-testkit --bin phimon-dev -- corpus --out traces`"
        );
    }
}
