package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/dist"
	"github.com/darwinlm/darwinlm-go/evolve"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/prune"
)

func init() {
	var listen, store string
	var ackWait time.Duration
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Run the NATS JetStream queue that spreads search and database work over darwinlm workers",
		Long: `queue runs an embedded NATS server with JetStream: the task and result streams,
the object store of inputs (model, database, pools, cached dense logits, keyed
by SHA-256) and the workers' announcements, all kept in --store, so a restarted
queue keeps what it had. Workers (darwinlm worker --queue nats://HOST:PORT)
pull tasks from it; a coordinator (darwinlm search ... --queue URL, or
darwinlm database ... --queue URL) publishes them. A user with a NATS deployment (JetStream enabled) points both at it
instead of running this command.

--ack-wait is how long a task may go without a sign of life from its worker
(workers report progress every third of it) before JetStream gives it to
another worker. It is fixed when the store is created.

The queue prints its URL and runs until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cc *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			q, err := dist.StartQueue(ctx, listen, store, ackWait)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "queue: %s (version %s), store %s\n", q.URL, dist.Version, store)
			if err := printJSON(map[string]any{"url": q.URL, "version": dist.Version}); err != nil {
				q.Stop()
				return err
			}
			<-ctx.Done()
			q.Stop()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:4222", "HOST:PORT to listen on (port 0: a free one; 0.0.0.0 for other machines)")
	f.StringVar(&store, "store", "", "folder JetStream keeps streams and objects in (required)")
	f.DurationVar(&ackWait, "ack-wait", dist.DefaultAckWait, "time without progress after which a task is redelivered to another worker")
	addCommand(cmd)
}

// addQueueFlag gives search a --queue flag: with it, candidates are
// evaluated by darwinlm workers instead of in this process.
func addQueueFlag(cmd *cobra.Command, c *evolve.Config) {
	var url string
	cmd.Flags().StringVar(&url, "queue", "", "coordinate: evaluate candidates on darwinlm workers through this queue (nats://HOST:PORT); tasks.parquet in --log records who computed what")
	run := cmd.RunE
	cmd.RunE = func(cc *cobra.Command, args []string) error {
		if url != "" {
			// Reach the queue before any compute: a wrong URL fails in seconds.
			if err := dist.Ping(cc.Context(), url); err != nil {
				return err
			}
			c.Remote = dist.Remote(url, c.Log)
		}
		return run(cc, args)
	}
}

var databaseQueueURL string

// addDatabaseQueueFlag gives database a --queue flag: the OBS pass of
// every module then runs on darwinlm workers.
func addDatabaseQueueFlag(cmd *cobra.Command) {
	cmd.Flags().StringVar(&databaseQueueURL, "queue", "", "coordinate: run each module's OBS pass on darwinlm workers through this queue (nats://HOST:PORT)")
}

// databaseQueue returns the OBS executor of database --queue (nil without it).
func databaseQueue(ctx context.Context, dense *model.Model, calib [][]int, o prune.BuildOptions) (prune.OBSExecutor, error) {
	if databaseQueueURL == "" {
		return nil, nil
	}
	co, err := dist.NewOBSCoordinator(ctx, databaseQueueURL, dist.DatabaseRunID(dense, calib, o), "")
	if err != nil {
		return nil, err
	}
	return co, nil
}
