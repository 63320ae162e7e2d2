//! The local record store: an append-only JSON Lines file. Each record is one line written
//! with a single `write` and synced; a line torn by a crash is cut off when the store is next
//! opened, so a reader never sees half a record.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::DatasetError;
use super::record::Record;

/// The append-only store.
pub struct RecordStore {
    path: PathBuf,
    next_seq: u64,
}

impl RecordStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<RecordStore, DatasetError> {
        let io = |e| DatasetError::io(path, e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        repair_torn_tail(&mut f, path)?;
        let mut next_seq = 0;
        for line in BufReader::new(File::open(path).map_err(io)?).lines() {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            // Only the sequence number is needed here.
            #[derive(serde::Deserialize)]
            struct Seq {
                seq: u64,
            }
            if let Ok(s) = serde_json::from_str::<Seq>(&line) {
                next_seq = next_seq.max(s.seq + 1);
            }
        }
        Ok(RecordStore {
            path: path.to_path_buf(),
            next_seq,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record`, giving it the next sequence number (returned).
    pub fn append(&mut self, record: &mut Record) -> Result<u64, DatasetError> {
        record.seq = self.next_seq;
        let mut line =
            serde_json::to_vec(record).map_err(|e| DatasetError::Encode(e.to_string()))?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| DatasetError::io(&self.path, e))?;
        f.write_all(&line)
            .and_then(|()| f.sync_data())
            .map_err(|e| DatasetError::io(&self.path, e))?;
        self.next_seq += 1;
        Ok(record.seq)
    }

    /// Streams the records in order.
    pub fn iter(&self) -> Result<impl Iterator<Item = Result<Record, DatasetError>>, DatasetError> {
        let f = File::open(&self.path).map_err(|e| DatasetError::io(&self.path, e))?;
        let path = self.path.clone();
        Ok(BufReader::new(f)
            .lines()
            .enumerate()
            .filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
            .map(move |(i, line)| {
                let line = line.map_err(|e| DatasetError::io(&path, e))?;
                Record::from_json(&line).map_err(|e| DatasetError::Corrupt {
                    path: path.display().to_string(),
                    line: i + 1,
                    reason: e.to_string(),
                })
            }))
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.next_seq
    }

    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }
}

/// Cuts a last line that lacks its newline (a write torn by a crash), however long: the file
/// is searched backwards for the last newline in fixed-size blocks, so memory stays small.
fn repair_torn_tail(f: &mut File, path: &Path) -> Result<(), DatasetError> {
    const BLOCK: u64 = 64 << 10;
    let io = |e| DatasetError::io(path, e);
    let len = f.metadata().map_err(io)?.len();
    if len == 0 {
        return Ok(());
    }
    let mut end = len;
    let mut block = vec![0u8; BLOCK as usize];
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(BLOCK);
        let buf = &mut block[..(end - start) as usize];
        f.seek(SeekFrom::Start(start)).map_err(io)?;
        f.read_exact(buf).map_err(io)?;
        if end == len && buf.last() == Some(&b'\n') {
            return Ok(());
        }
        if let Some(i) = buf.iter().rposition(|b| *b == b'\n') {
            break start + i as u64 + 1;
        }
        end = start;
    };
    tracing::warn!(path = %path.display(), cut = len - keep, "cutting a torn last record");
    f.set_len(keep).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        let task: crate::tasks::Task = serde_json::from_value(serde_json::json!({
            "instance_id": id, "repo": "pypi/x", "patch": "p", "problem_statement": "s",
            "FAIL_TO_PASS": ["a"], "PASS_TO_PASS": []}))
        .unwrap();
        Record::for_task(&task)
    }

    #[test]
    fn records_append_in_order_and_a_torn_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        let mut store = RecordStore::open(&path).unwrap();
        for id in ["a", "b"] {
            store.append(&mut record(id)).unwrap();
        }
        // A crash in the middle of a third write.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":2,\"recorded_at\":\"x").unwrap();
        drop(f);
        let mut store = RecordStore::open(&path).unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(store.append(&mut record("c")).unwrap(), 2);
        let ids: Vec<String> = store
            .iter()
            .unwrap()
            .map(|r| r.unwrap().instance_id)
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn a_torn_tail_of_any_length_is_cut() {
        // Issue 13: a torn last record over 1 MiB made the store unopenable.
        for torn in [1usize, (64 << 10) - 1, 64 << 10, (64 << 10) + 1, 3 << 20] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("records.jsonl");
            let mut store = RecordStore::open(&path).unwrap();
            for id in ["a", "b"] {
                store.append(&mut record(id)).unwrap();
            }
            let whole = std::fs::metadata(&path).unwrap().len();
            let mut f = OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(b"{\"seq\":2,\"patch\":\"").unwrap();
            f.write_all(&vec![b'x'; torn]).unwrap();
            drop(f);
            let mut store = RecordStore::open(&path).unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().len(), whole, "{torn}");
            assert_eq!(store.len(), 2);
            assert_eq!(store.append(&mut record("c")).unwrap(), 2);
            assert_eq!(store.iter().unwrap().count(), 3);
        }
        // A file that is one torn line, and an empty one.
        for torn in [0usize, 5, 200 << 10] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("records.jsonl");
            std::fs::write(&path, vec![b'{'; torn]).unwrap();
            let store = RecordStore::open(&path).unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
            assert!(store.is_empty());
        }
    }
}
