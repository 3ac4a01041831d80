// lumberjack-writer writes numbered audit events, one JSON line per Write, through the rotating writer kube-apiserver
// uses for --audit-log-path (gopkg.in/natefinch/lumberjack.v2, configured as the apiserver's log backend does:
// Filename, MaxSize in megabytes, MaxBackups, MaxAge, Compress; LocalTime left false, so backup names are in UTC).
// Used by kaudit's tail tests and benchmarks/tail-rotation.mjs.
//
//	lumberjack-writer -path audit.log -from 0 -n 20000 -rate 12000 -maxsize 1 -compress -pad 900
//
// Prints "wrote N" at the end (and every -report events) on stdout.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"
)

func main() {
	path := flag.String("path", "", "the audit log (the apiserver's --audit-log-path)")
	from := flag.Int("from", 0, "number of the first event")
	n := flag.Int("n", 1000, "events to write")
	rate := flag.Float64("rate", 0, "events per second (0: as fast as possible)")
	maxSize := flag.Int("maxsize", 1, "--audit-log-maxsize: megabytes before rotation")
	maxBackups := flag.Int("maxbackups", 0, "--audit-log-maxbackup (0: keep all)")
	maxAge := flag.Int("maxage", 0, "--audit-log-maxage in days (0: keep all)")
	compress := flag.Bool("compress", false, "--audit-log-compress")
	pad := flag.Int("pad", 600, "bytes of padding per event (an annotation), to set the event size")
	report := flag.Int("report", 0, "print progress every this many events (0: only at the end)")
	flag.Parse()
	if *path == "" {
		fmt.Fprintln(os.Stderr, "lumberjack-writer: -path is required")
		os.Exit(2)
	}
	w := &lumberjack.Logger{Filename: *path, MaxSize: *maxSize, MaxBackups: *maxBackups, MaxAge: *maxAge, Compress: *compress}
	defer w.Close()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	padding := strings.Repeat("x", *pad)
	t0 := time.Now()
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for i := 0; i < *n; i++ {
		k := *from + i
		if *rate > 0 {
			// Paced by elapsed time: a burst catches up after a slow write, as a busy apiserver's log does.
			due := t0.Add(time.Duration(float64(i) / *rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		at := base.Add(time.Duration(k) * time.Millisecond).Format("2006-01-02T15:04:05.000000Z")
		line := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"00000000-0000-4000-8000-%012d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?limit=500","verb":"list","user":{"username":"system:serviceaccount:kube-system:replicaset-controller","groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"]},"sourceIPs":["10.0.0.%d"],"userAgent":"kube-controller-manager/v1.30.2 (linux/amd64) kubernetes/3c3c3c3/system:serviceaccount:kube-system:replicaset-controller","objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"%s","stageTimestamp":"%s","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding","test.kaudit.io/pad":"%s"}}`+"\n",
			k, k%250+1, at, at, padding)
		// One Write per event, as the apiserver's log backend writes.
		if _, err := w.Write([]byte(line)); err != nil {
			fmt.Fprintf(os.Stderr, "lumberjack-writer: event %d: %v\n", k, err)
			os.Exit(1)
		}
		if *report > 0 && (i+1)%*report == 0 {
			fmt.Fprintf(out, "wrote %d\n", i+1)
			out.Flush()
		}
	}
	fmt.Fprintf(out, "wrote %d in %.3fs\n", *n, time.Since(t0).Seconds())
}
