package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/dist"
	"github.com/darwinlm/darwinlm-go/internal/progress"
)

func init() {
	var o dist.WorkerOptions
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Evaluate search candidates and database modules pulled from a darwinlm queue",
		Long: `worker pulls candidate evaluations (stitch from the database, fine-tune,
score against the cached dense logits) and database modules (the greedy
structured OBS pass of one module) from the queue, publishes each result
and only then acknowledges the task; a worker killed mid-task loses nothing,
its task goes to another worker after the queue's ack deadline. Inputs are
fetched from the queue's object store once and kept in --cache. The worker
announces its id, backend and version; it refuses to work for a queue of
another version (run the same darwinlm build on every machine). Start as many
as there are machines (or one per core group); stop with Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cc *cobra.Command, _ []string) error {
			progress.Quiet = true
			if o.URL == "" {
				return fmt.Errorf("--queue is required (nats://HOST:PORT)")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return dist.RunWorker(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.URL, "queue", "", "queue URL, nats://HOST:PORT (required)")
	f.StringVar(&o.Backend, "backend", "auto", "compute backend: auto, "+strings.Join(backend.Names(), ", "))
	f.StringVar(&o.Cache, "cache", "", "folder for inputs fetched from the queue (default: the user cache folder, darwinlm/dist)")
	f.StringVar(&o.ID, "id", "", "worker id in logs (default HOST-PID)")
	f.IntVar(&o.MaxTasks, "max-tasks", 0, "stop after this many tasks (0: never)")
	addCommand(cmd)
}
