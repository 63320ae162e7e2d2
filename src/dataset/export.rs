//! Parquet export: records streamed from the store into zstd-compressed shards
//! (`data/train-NNNNN.parquet`, numbered on across exports) in batches, never all in memory,
//! plus the dataset card. Exports are incremental: a state file remembers the last exported
//! record, so a second export adds new shards and leaves the old ones untouched. The state
//! names the column layout ([`SCHEMA_VERSION`]); a folder holding shards of another layout is
//! refused rather than mixed.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
    UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::DatasetError;
use super::card::write_card;
use super::record::Record;
use super::store::RecordStore;

const STATE_FILE: &str = ".agentao-export.json";

/// The column layout of the shards: 2 since `patch` is the gold fix (SWE-bench's meaning), the
/// miner's patch is `model_patch`, `difficulty` is SWE-bench Verified's level and its features
/// are `difficulty_features`. Layout 1 had `gold_patch`, the miner's `patch` and the features
/// in `difficulty`.
pub const SCHEMA_VERSION: u32 = 2;

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Only records made at or after this time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Rows per Parquet shard.
    pub rows_per_shard: usize,
    /// Rows per row group (what a streaming reader loads at once).
    pub row_group_rows: usize,
    /// Rows converted to Arrow at a time.
    pub batch_rows: usize,
    /// Dataset name for the card.
    pub name: String,
    /// Tasks still in rotation (served to miners): their rows go out without the answer, the
    /// gold patch (`patch`) and a miner's patch that resolved them (`model_patch`) both left
    /// empty. A row keeps what it was
    /// exported with: a task retired later shows its answers in rows exported after that.
    pub withhold: BTreeSet<String>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            since: None,
            rows_per_shard: 100_000,
            row_group_rows: 5_000,
            batch_rows: 1_000,
            name: "agentao".into(),
            withhold: BTreeSet::new(),
        }
    }
}

/// What the export folder holds so far (kept in its state file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExportState {
    /// The column layout of the shards ([`SCHEMA_VERSION`]; 1 in state files without it).
    #[serde(default = "first_schema")]
    pub schema_version: u32,
    /// Sequence number after the last exported record.
    pub next_seq: u64,
    pub shards: Vec<String>,
    pub rows: u64,
    pub resolved: u64,
    pub tasks: BTreeSet<String>,
    pub packages: BTreeSet<String>,
    pub miners: BTreeSet<String>,
}

fn first_schema() -> u32 {
    1
}

impl ExportState {
    fn new() -> ExportState {
        ExportState {
            schema_version: SCHEMA_VERSION,
            ..ExportState::default()
        }
    }
}

/// What one export did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub new_rows: u64,
    pub new_shards: Vec<String>,
    pub total_rows: u64,
    pub total_shards: usize,
}

/// The Arrow schema of the dataset.
pub fn schema() -> Arc<Schema> {
    use DataType::*;
    let s = |n: &str| Field::new(n, Utf8, false);
    Arc::new(Schema::new(vec![
        Field::new("seq", UInt64, false),
        Field::new(
            "recorded_at",
            Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        s("round_id"),
        s("validator_hotkey"),
        s("agentao_version"),
        s("instance_id"),
        s("repo"),
        s("base_commit"),
        s("problem_statement"),
        s("hints_text"),
        s("version"),
        s("patch"),
        s("FAIL_TO_PASS"),
        s("PASS_TO_PASS"),
        s("task_created_at"),
        s("package"),
        s("pypi_version"),
        s("mutation_kind"),
        s("difficulty"),
        s("difficulty_features"),
        s("miner_hotkey"),
        Field::new("miner_uid", Int64, false),
        s("agent"),
        s("model"),
        s("model_patch"),
        s("trajectory"),
        Field::new("resolved", Boolean, false),
        s("outcome"),
        s("outcome_reason"),
        s("tests_status"),
        Field::new("judge_quality", Float64, true),
        Field::new("judge_brevity", Float64, true),
        Field::new("time_score", Float64, false),
        Field::new("final_score", Float64, false),
        Field::new("model_error", Boolean, false),
        Field::new("cost_usd", Float64, false),
        Field::new("prompt_tokens", Int64, false),
        Field::new("completion_tokens", Int64, false),
        Field::new("response_seconds", Float64, false),
        Field::new("eval_seconds", Float64, false),
        Field::new("forecast_difficulty", Float64, true),
        Field::new("forecast_p_resolve", Float64, true),
        Field::new("miner_forecast", Float64, true),
    ]))
}

/// Converts records to one Arrow batch.
fn to_batch(records: &[Record]) -> Result<RecordBatch, DatasetError> {
    let n = records.len();
    let strings = |f: &dyn Fn(&Record) -> &str| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 16);
        for r in records {
            b.append_value(f(r));
        }
        Arc::new(b.finish())
    };
    let floats = |f: &dyn Fn(&Record) -> Option<f64>| -> ArrayRef {
        let mut b = Float64Builder::with_capacity(n);
        for r in records {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let ints = |f: &dyn Fn(&Record) -> i64| -> ArrayRef {
        let mut b = Int64Builder::with_capacity(n);
        for r in records {
            b.append_value(f(r));
        }
        Arc::new(b.finish())
    };
    let mut seq = UInt64Builder::with_capacity(n);
    let mut at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut resolved = BooleanBuilder::with_capacity(n);
    let mut model_error = BooleanBuilder::with_capacity(n);
    for r in records {
        seq.append_value(r.seq);
        let t = chrono::DateTime::parse_from_rfc3339(&r.recorded_at)
            .map_err(|e| DatasetError::Encode(format!("record {}: recorded_at: {e}", r.seq)))?;
        at.append_value(t.timestamp_micros());
        resolved.append_value(r.resolved);
        model_error.append_value(r.model_error);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(seq.finish()),
        Arc::new(at.finish()),
        strings(&|r| &r.round_id),
        strings(&|r| &r.validator_hotkey),
        strings(&|r| &r.agentao_version),
        strings(&|r| &r.instance_id),
        strings(&|r| &r.repo),
        strings(&|r| &r.base_commit),
        strings(&|r| &r.problem_statement),
        strings(&|r| &r.hints_text),
        strings(&|r| &r.version),
        strings(&|r| &r.patch),
        strings(&|r| &r.fail_to_pass),
        strings(&|r| &r.pass_to_pass),
        strings(&|r| &r.task_created_at),
        strings(&|r| &r.package),
        strings(&|r| &r.pypi_version),
        strings(&|r| &r.mutation_kind),
        strings(&|r| &r.difficulty),
        strings(&|r| &r.difficulty_features),
        strings(&|r| &r.miner_hotkey),
        ints(&|r| r.miner_uid),
        strings(&|r| &r.agent),
        strings(&|r| &r.model),
        strings(&|r| &r.model_patch),
        strings(&|r| &r.trajectory),
        Arc::new(resolved.finish()),
        strings(&|r| &r.outcome),
        strings(&|r| &r.outcome_reason),
        strings(&|r| &r.tests_status),
        floats(&|r| r.judge_quality),
        floats(&|r| r.judge_brevity),
        floats(&|r| Some(r.time_score)),
        floats(&|r| Some(r.final_score)),
        Arc::new(model_error.finish()),
        floats(&|r| Some(r.cost_usd)),
        ints(&|r| r.prompt_tokens),
        ints(&|r| r.completion_tokens),
        floats(&|r| Some(r.response_seconds)),
        floats(&|r| Some(r.eval_seconds)),
        floats(&|r| r.forecast_difficulty),
        floats(&|r| r.forecast_p_resolve),
        floats(&|r| r.miner_forecast),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| DatasetError::Encode(e.to_string()))
}

/// Reads the export folder's state (empty for a new folder).
pub fn read_state(out: &Path) -> Result<ExportState, DatasetError> {
    let path = out.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| DatasetError::Corrupt {
            path: path.display().to_string(),
            line: 0,
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ExportState::new()),
        Err(e) => Err(DatasetError::io(&path, e)),
    }
}

/// The file name of the state, which `push` leaves out.
pub fn is_state_file(name: &str) -> bool {
    name == STATE_FILE
}

struct Shard {
    tmp: PathBuf,
    writer: ArrowWriter<File>,
    rows: usize,
}

/// Exports the records not yet in `out` (and newer than `since`) as new shards, then rewrites
/// the card and the state.
pub fn export(
    store: &RecordStore,
    out: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport, DatasetError> {
    let data = out.join("data");
    std::fs::create_dir_all(&data).map_err(|e| DatasetError::io(&data, e))?;
    let mut state = read_state(out)?;
    if state.schema_version != SCHEMA_VERSION {
        if !state.shards.is_empty() {
            return Err(DatasetError::SchemaChanged {
                path: out.display().to_string(),
                found: state.schema_version,
                now: SCHEMA_VERSION,
            });
        }
        state.schema_version = SCHEMA_VERSION;
    }
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(opts.row_group_rows.max(1)))
        .set_created_by(format!("agentao {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut finished: Vec<PathBuf> = Vec::new();
    let mut shard: Option<Shard> = None;
    let mut batch: Vec<Record> = Vec::with_capacity(opts.batch_rows);
    let mut new_rows = 0u64;
    let mut next_seq = state.next_seq;
    let mut stats = state.clone();

    let flush = |batch: &mut Vec<Record>,
                 shard: &mut Option<Shard>,
                 finished: &mut Vec<PathBuf>|
     -> Result<(), DatasetError> {
        if batch.is_empty() {
            return Ok(());
        }
        let rb = to_batch(batch)?;
        if shard.is_none() {
            let tmp = data.join(format!("new-{:05}.parquet.partial", finished.len()));
            let file = File::create(&tmp).map_err(|e| DatasetError::io(&tmp, e))?;
            let writer = ArrowWriter::try_new(file, schema(), Some(props.clone()))
                .map_err(|e| DatasetError::Encode(e.to_string()))?;
            *shard = Some(Shard {
                tmp,
                writer,
                rows: 0,
            });
        }
        let s = shard.as_mut().expect("just set");
        s.writer
            .write(&rb)
            .map_err(|e| DatasetError::Encode(e.to_string()))?;
        s.rows += batch.len();
        batch.clear();
        if s.rows >= opts.rows_per_shard {
            let s = shard.take().expect("present");
            s.writer
                .close()
                .map_err(|e| DatasetError::Encode(e.to_string()))?;
            finished.push(s.tmp);
        }
        Ok(())
    };

    for record in store.iter()? {
        let record = record?;
        if record.seq < state.next_seq {
            continue;
        }
        next_seq = next_seq.max(record.seq + 1);
        if let Some(since) = opts.since {
            let at = chrono::DateTime::parse_from_rfc3339(&record.recorded_at)
                .map_err(|e| DatasetError::Encode(e.to_string()))?;
            if at < since {
                continue;
            }
        }
        stats.rows += 1;
        stats.resolved += u64::from(record.resolved);
        stats.tasks.insert(record.instance_id.clone());
        if !record.package.is_empty() {
            stats.packages.insert(record.package.clone());
        }
        if !record.miner_hotkey.is_empty() {
            stats.miners.insert(record.miner_hotkey.clone());
        }
        new_rows += 1;
        let mut record = record;
        if opts.withhold.contains(&record.instance_id) {
            record.patch.clear();
            if record.resolved {
                record.model_patch.clear();
            }
        }
        batch.push(record);
        let room = opts
            .rows_per_shard
            .saturating_sub(shard.as_ref().map_or(0, |s| s.rows))
            .min(opts.batch_rows.max(1));
        if batch.len() >= room {
            flush(&mut batch, &mut shard, &mut finished)?;
        }
    }
    flush(&mut batch, &mut shard, &mut finished)?;
    if let Some(s) = shard.take() {
        s.writer
            .close()
            .map_err(|e| DatasetError::Encode(e.to_string()))?;
        finished.push(s.tmp);
    }

    // Number the new shards after the old ones, which keep their names: no name claims a
    // total that a later export would make wrong.
    let mut new_shards = Vec::new();
    for (i, tmp) in finished.iter().enumerate() {
        let name = format!("train-{:05}.parquet", state.shards.len() + i);
        let path = data.join(&name);
        std::fs::rename(tmp, &path).map_err(|e| DatasetError::io(&path, e))?;
        new_shards.push(format!("data/{name}"));
    }
    stats.shards.extend(new_shards.iter().cloned());
    stats.next_seq = next_seq;
    state = stats;
    write_card(out, &opts.name, &state)?;
    let tmp = out.join(format!("{STATE_FILE}.partial"));
    let json =
        serde_json::to_vec_pretty(&state).map_err(|e| DatasetError::Encode(e.to_string()))?;
    std::fs::write(&tmp, json).map_err(|e| DatasetError::io(&tmp, e))?;
    std::fs::rename(&tmp, out.join(STATE_FILE)).map_err(|e| DatasetError::io(out, e))?;
    Ok(ExportReport {
        new_rows,
        new_shards,
        total_rows: state.rows,
        total_shards: state.shards.len(),
    })
}
