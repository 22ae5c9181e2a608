package dist

import (
	"bytes"

	"github.com/parquet-go/parquet-go"

	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
)

// TaskLogFile is the coordinator's record, beside the search log, of who
// computed what: one row per result received (the search's own Parquet
// files stay the source of truth; this one only tells the story of the
// queue: redeliveries, duplicates, results replayed on --resume).
const TaskLogFile = "tasks.parquet"

// TaskRow is one row of tasks.parquet.
type TaskRow struct {
	RunID      string  `parquet:"run_id"`
	Task       string  `parquet:"task"` // GEN.STAGE.CANDIDATE (gen −1 as m1) or obs.MODULE
	Generation int64   `parquet:"generation"`
	Stage      int64   `parquet:"stage"`
	Candidate  int64   `parquet:"candidate"`
	Worker     string  `parquet:"worker"`
	Backend    string  `parquet:"backend"`
	Delivered  int64   `parquet:"delivered"` // delivery count of the task; > 1 = redelivered after a lost worker
	Seconds    float64 `parquet:"seconds"`   // the worker's compute time
	Duplicate  bool    `parquet:"duplicate"` // a second answer to the same task, dropped
	Replayed   bool    `parquet:"replayed"`  // read back from the result stream by a resumed coordinator
	Error      string  `parquet:"error"`
}

func writeTaskLog(path string, rows []TaskRow) error {
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[TaskRow](&buf)
	if _, err := w.Write(rows); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, buf.Bytes())
}
