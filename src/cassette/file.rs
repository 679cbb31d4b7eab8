//! Writing and reading cassette files.

use std::{
    fmt,
    fs::File,
    io::{BufReader, BufWriter, Read, Write},
    path::Path,
    sync::{Mutex, MutexGuard},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use super::{
    CassetteMeta, Record, StateAnswer, TimedEvent,
    codec::{self, DecodeError, FRAME_LEN, HEADER_LEN, MAX_RECORD_LEN, kind},
};
use crate::ingest::Event;

/// A cassette that cannot be written or read. Every variant names the file; decoding errors also
/// name the record (1 is the first after the header) and the field.
#[derive(Debug, thiserror::Error)]
pub enum CassetteError {
    /// The file could not be opened, read or written.
    #[error("{file}: {action}: {source}")]
    Io {
        /// The file.
        file: String,
        /// What was being done.
        action: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid cassette.
    #[error("{file}: record {record}, field `{field}`: {detail}")]
    Format {
        /// The file.
        file: String,
        /// Record number (0 for the header, 1 for the first record).
        record: u64,
        /// The field.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The writer was finished (or failed before) and takes no more records.
    #[error("{file}: the cassette writer is closed{}", .cause.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Closed {
        /// The file.
        file: String,
        /// The first write failure, if that is what closed it.
        cause: Option<String>,
    },
}

impl CassetteError {
    fn format(file: &str, record: u64, e: DecodeError) -> Self {
        Self::Format { file: file.to_owned(), record, field: e.field, detail: e.detail }
    }
}

/// Count and bytes of one record kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Records.
    pub count: u64,
    /// Bytes on disk, frames included.
    pub bytes: u64,
}

impl KindStats {
    /// Average bytes per record (0 when none).
    pub const fn per_record(&self) -> u64 {
        match self.bytes.checked_div(self.count) {
            Some(v) => v,
            None => 0,
        }
    }

    fn add(&mut self, bytes: usize) {
        self.count += 1;
        self.bytes += bytes as u64;
    }
}

/// Sizes of a cassette by record kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CassetteStats {
    /// Total bytes (header included).
    pub bytes: u64,
    /// Records (meta and end included).
    pub records: u64,
    /// Heads.
    pub heads: KindStats,
    /// Pending transactions.
    pub pending: KindStats,
    /// Reorg, connection and resync markers.
    pub markers: KindStats,
    /// State answers (`block`, `latest`, `read`, failures).
    pub answers: KindStats,
    /// Of the answers, the reads.
    pub reads: KindStats,
    /// Meta and end records.
    pub other: KindStats,
}

impl CassetteStats {
    fn add(&mut self, kind: u8, frame_bytes: usize) {
        self.records += 1;
        self.bytes += frame_bytes as u64;
        match kind {
            kind::HEAD => self.heads.add(frame_bytes),
            kind::PENDING => self.pending.add(frame_bytes),
            kind::REORG | kind::CONNECTION | kind::RESYNC => self.markers.add(frame_bytes),
            kind::BLOCK
            | kind::LATEST
            | kind::BLOCK_NAMED
            | kind::LATEST_NAMED
            | kind::READ
            | kind::FAILED => {
                self.answers.add(frame_bytes);
                if kind == kind::READ {
                    self.reads.add(frame_bytes);
                }
            }
            _ => self.other.add(frame_bytes),
        }
    }
}

impl fmt::Display for CassetteStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes, {} records: {} heads ({} B each), {} pending txs ({} B each), {} state answers ({} B each; {} reads, {} B each), {} markers",
            self.bytes,
            self.records,
            self.heads.count,
            self.heads.per_record(),
            self.pending.count,
            self.pending.per_record(),
            self.answers.count,
            self.answers.per_record(),
            self.reads.count,
            self.reads.per_record(),
            self.markers.count,
        )
    }
}

struct WriterState {
    out: Option<BufWriter<File>>,
    buf: Vec<u8>,
    stats: CassetteStats,
    failure: Option<String>,
}

/// Appends records to a cassette file. Thread-safe (one short lock per record); share it in an
/// `Arc` between the event recorder and a [`super::RecordingSource`]. [`CassetteWriter::finish`]
/// writes the end record and syncs; dropping an unfinished writer flushes what it has.
pub struct CassetteWriter {
    file: String,
    epoch: Instant,
    state: Mutex<WriterState>,
}

impl fmt::Debug for CassetteWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassetteWriter").field("file", &self.file).finish_non_exhaustive()
    }
}

impl CassetteWriter {
    /// Creates (or truncates) `path` and writes the header and `meta`. Offset 0 is now; a zero
    /// `meta.started_unix_ms` is set to the current time.
    ///
    /// # Errors
    /// [`CassetteError::Io`] when the file cannot be created or written.
    pub fn create(path: &Path, meta: CassetteMeta) -> Result<Self, CassetteError> {
        let name = path.display().to_string();
        let f = File::create(path).map_err(|source| CassetteError::Io {
            file: name.clone(),
            action: "creating the cassette",
            source,
        })?;
        let mut meta = meta;
        if meta.started_unix_ms == 0 {
            meta.started_unix_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        }
        let mut out = BufWriter::with_capacity(256 << 10, f);
        out.write_all(&codec::header()).map_err(|source| CassetteError::Io {
            file: name.clone(),
            action: "writing the header",
            source,
        })?;
        let w = Self {
            file: name,
            epoch: Instant::now(),
            state: Mutex::new(WriterState {
                out: Some(out),
                buf: Vec::with_capacity(4096),
                stats: CassetteStats { bytes: HEADER_LEN as u64, ..CassetteStats::default() },
                failure: None,
            }),
        };
        w.append(&Record::Meta(meta))?;
        Ok(w)
    }

    /// The file, as displayed in errors.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The instant of offset 0.
    pub const fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Nanoseconds from offset 0 to `at` (0 for an earlier instant).
    pub fn offset_ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one record.
    ///
    /// # Errors
    /// [`CassetteError::Io`] when the write fails (the writer then closes and keeps the cause);
    /// [`CassetteError::Closed`] after [`CassetteWriter::finish`] or an earlier failure.
    pub fn append(&self, rec: &Record) -> Result<(), CassetteError> {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(out) = st.out.as_mut() else {
            return Err(CassetteError::Closed {
                file: self.file.clone(),
                cause: st.failure.clone(),
            });
        };
        st.buf.clear();
        let k = codec::encode_frame(rec, &mut st.buf);
        if st.buf.len() - FRAME_LEN > MAX_RECORD_LEN {
            // Never write what no reader would accept; the writer stays usable.
            return Err(CassetteError::Format {
                file: self.file.clone(),
                record: st.stats.records + 1,
                field: "record",
                detail: format!(
                    "{} bytes exceed the record limit of {MAX_RECORD_LEN}",
                    st.buf.len() - FRAME_LEN
                ),
            });
        }
        if let Err(source) = out.write_all(&st.buf) {
            st.failure = Some(source.to_string());
            st.out = None;
            return Err(CassetteError::Io { file: self.file.clone(), action: "appending", source });
        }
        st.stats.add(k, st.buf.len());
        Ok(())
    }

    /// Appends `event`, offset by its `received_at` (heads and pending transactions) or by now
    /// (markers, which carry no arrival time).
    ///
    /// # Errors
    /// As [`CassetteWriter::append`].
    pub fn event(&self, event: &Event) -> Result<(), CassetteError> {
        let at = match event {
            Event::Head(h) => h.received_at,
            Event::Pending(p) => p.received_at,
            _ => Instant::now(),
        };
        let offset_ns = self.offset_ns(at);
        self.append(&Record::Event(TimedEvent { offset_ns, event: event.clone() }))
    }

    /// Appends a state answer.
    ///
    /// # Errors
    /// As [`CassetteWriter::append`].
    pub fn answer(&self, answer: StateAnswer) -> Result<(), CassetteError> {
        self.append(&Record::Answer(answer))
    }

    /// Flushes buffered records to the file.
    ///
    /// # Errors
    /// [`CassetteError::Io`] when the flush fails; [`CassetteError::Closed`] when closed.
    pub fn flush(&self) -> Result<(), CassetteError> {
        let mut st = self.lock();
        let Some(out) = st.out.as_mut() else {
            return Err(CassetteError::Closed {
                file: self.file.clone(),
                cause: st.failure.clone(),
            });
        };
        out.flush().map_err(|source| CassetteError::Io {
            file: self.file.clone(),
            action: "flushing",
            source,
        })
    }

    /// The first write failure, if any (the writer is closed after one).
    pub fn failure(&self) -> Option<String> {
        self.lock().failure.clone()
    }

    /// Sizes written so far.
    pub fn stats(&self) -> CassetteStats {
        self.lock().stats
    }

    /// Writes the end record, flushes, syncs and closes the file; returns the sizes.
    ///
    /// # Errors
    /// [`CassetteError::Io`] when writing or syncing fails; [`CassetteError::Closed`] when
    /// already finished or an earlier write failed (the cause is named).
    pub fn finish(&self) -> Result<CassetteStats, CassetteError> {
        let records = self.lock().stats.records;
        self.append(&Record::End { records })?;
        let mut st = self.lock();
        let Some(out) = st.out.take() else {
            return Err(CassetteError::Closed {
                file: self.file.clone(),
                cause: st.failure.clone(),
            });
        };
        let io = |action, source| CassetteError::Io { file: self.file.clone(), action, source };
        let f = out.into_inner().map_err(|e| io("flushing", e.into_error()))?;
        f.sync_all().map_err(|e| io("syncing", e))?;
        Ok(st.stats)
    }
}

impl Drop for CassetteWriter {
    fn drop(&mut self) {
        if let Some(out) = self.lock().out.as_mut() {
            let _ = out.flush();
        }
    }
}

/// Reads a cassette record by record (streaming; memory is one record at a time).
pub struct CassetteReader<R> {
    src: R,
    file: String,
    record: u64,
    meta: CassetteMeta,
    epoch: Instant,
    ended: bool,
    stats: CassetteStats,
    buf: Vec<u8>,
}

impl<R> fmt::Debug for CassetteReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassetteReader")
            .field("file", &self.file)
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl CassetteReader<BufReader<File>> {
    /// Opens `path` and reads its header and meta record.
    ///
    /// # Errors
    /// [`CassetteError::Io`] when it cannot be opened or read, [`CassetteError::Format`] when
    /// the header or meta record is invalid.
    pub fn open(path: &Path) -> Result<Self, CassetteError> {
        let name = path.display().to_string();
        let f = File::open(path).map_err(|source| CassetteError::Io {
            file: name.clone(),
            action: "opening the cassette",
            source,
        })?;
        Self::new(BufReader::with_capacity(256 << 10, f), &name)
    }
}

impl<R: Read> CassetteReader<R> {
    /// Reads the header and meta record from `src`; `name` is the file named in errors.
    ///
    /// # Errors
    /// As [`CassetteReader::open`].
    pub fn new(src: R, name: &str) -> Result<Self, CassetteError> {
        let mut r = Self {
            src,
            file: name.to_owned(),
            record: 0,
            meta: CassetteMeta::default(),
            epoch: Instant::now(),
            ended: false,
            stats: CassetteStats { bytes: HEADER_LEN as u64, ..CassetteStats::default() },
            buf: Vec::new(),
        };
        let mut header = [0u8; HEADER_LEN];
        match r.fill(&mut header, "header")? {
            HEADER_LEN => {}
            n => {
                return Err(CassetteError::format(
                    name,
                    0,
                    DecodeError::new(
                        "header",
                        format!("the file has {n} bytes; a header has {HEADER_LEN}"),
                    ),
                ));
            }
        }
        codec::check_header(&header).map_err(|e| CassetteError::format(name, 0, e))?;
        match r.next_record()? {
            Some(Record::Meta(m)) => r.meta = m,
            Some(_) => {
                return Err(CassetteError::format(
                    name,
                    1,
                    DecodeError::new("kind", "the first record is not the meta record"),
                ));
            }
            None => {
                return Err(CassetteError::format(
                    name,
                    1,
                    DecodeError::new("meta", "the file ends before the meta record"),
                ));
            }
        }
        Ok(r)
    }

    /// The chain metadata.
    pub const fn meta(&self) -> &CassetteMeta {
        &self.meta
    }

    /// Whether the end record has been read.
    pub const fn ended(&self) -> bool {
        self.ended
    }

    /// Sizes of what has been read so far.
    pub const fn stats(&self) -> &CassetteStats {
        &self.stats
    }

    fn bad(&self, record: u64, field: &'static str, detail: String) -> CassetteError {
        CassetteError::format(&self.file, record, DecodeError::new(field, detail))
    }

    /// Reads as many bytes as are there, up to `buf.len()`.
    fn fill(&mut self, buf: &mut [u8], action: &'static str) -> Result<usize, CassetteError> {
        let mut n = 0;
        while n < buf.len() {
            match self.src.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CassetteError::Io { file: self.file.clone(), action, source });
                }
            }
        }
        Ok(n)
    }

    /// The next record; `None` at the end of the file (or after the end record).
    ///
    /// # Errors
    /// [`CassetteError::Format`] naming the record and field when the bytes are invalid or cut
    /// short; [`CassetteError::Io`] when reading fails.
    pub fn next_record(&mut self) -> Result<Option<Record>, CassetteError> {
        let number = self.record + 1;
        let mut frame = [0u8; FRAME_LEN];
        let got = self.fill(&mut frame, "reading")?;
        if got == 0 {
            return Ok(None);
        }
        if self.ended {
            return Err(self.bad(number, "record", "data after the end record".into()));
        }
        if got < FRAME_LEN {
            return Err(self.bad(
                number,
                "frame",
                format!("cut short: {got} of {FRAME_LEN} frame bytes"),
            ));
        }
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if len == 0 || len > MAX_RECORD_LEN {
            return Err(self.bad(
                number,
                "frame.length",
                format!("{len} bytes (1..={MAX_RECORD_LEN} allowed)"),
            ));
        }
        // Grow with what actually arrives, so a hostile length costs nothing.
        self.buf.clear();
        let read =
            (&mut self.src).take(len as u64).read_to_end(&mut self.buf).map_err(|source| {
                CassetteError::Io { file: self.file.clone(), action: "reading", source }
            })?;
        if read < len {
            return Err(self.bad(number, "payload", format!("cut short: {read} of {len} bytes")));
        }
        if codec::crc32(&self.buf) != crc {
            return Err(self.bad(
                number,
                "frame.crc",
                "checksum mismatch (the record is corrupt)".into(),
            ));
        }
        let rec = codec::decode_record(&self.buf, self.epoch)
            .map_err(|e| CassetteError::format(&self.file, number, e))?;
        if number > 1 && matches!(rec, Record::Meta(_)) {
            return Err(self.bad(number, "kind", "a second meta record".into()));
        }
        if let Record::End { records } = rec {
            if records != self.record {
                return Err(self.bad(
                    number,
                    "end.records",
                    format!(
                        "the end record counts {records} records, the file has {}",
                        self.record
                    ),
                ));
            }
            self.ended = true;
        }
        self.record = number;
        self.stats.add(self.buf[0], FRAME_LEN + len);
        Ok(Some(rec))
    }
}

/// A whole cassette in memory: its metadata, its events in order and its state answers.
#[derive(Clone, Debug)]
pub struct Cassette {
    /// Chain metadata.
    pub meta: CassetteMeta,
    /// Events in arrival order.
    pub events: Vec<TimedEvent>,
    /// State answers in recorded order.
    pub answers: Vec<StateAnswer>,
    /// Whether the file ends with its end record (false: the recording was interrupted).
    pub complete: bool,
    /// Sizes by record kind.
    pub stats: CassetteStats,
}

impl Cassette {
    /// Loads the cassette at `path`.
    ///
    /// # Errors
    /// [`CassetteError`] naming the file, record and field of the first problem.
    pub fn load(path: &Path) -> Result<Self, CassetteError> {
        Self::read_all(CassetteReader::open(path)?)
    }

    /// Loads a cassette from bytes; `name` is what errors call it.
    ///
    /// # Errors
    /// As [`Cassette::load`].
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self, CassetteError> {
        Self::read_all(CassetteReader::new(bytes, name)?)
    }

    fn read_all<R: Read>(mut r: CassetteReader<R>) -> Result<Self, CassetteError> {
        let mut events = Vec::new();
        let mut answers = Vec::new();
        while let Some(rec) = r.next_record()? {
            match rec {
                Record::Event(e) => events.push(e),
                Record::Answer(a) => answers.push(a),
                Record::Meta(_) | Record::End { .. } => {}
            }
        }
        Ok(Self { meta: r.meta.clone(), events, answers, complete: r.ended, stats: r.stats })
    }

    /// A state source answering from this cassette's recorded answers.
    pub fn source(&self) -> super::CassetteSource {
        super::CassetteSource::new(&self.answers)
    }

    /// A replay of this cassette's events.
    pub fn replay(&self) -> super::EventReplay {
        super::EventReplay::new(self.events.clone())
    }
}
