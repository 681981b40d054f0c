// The Go worker printed in workflow-graph's "Creating Workers" guide (shared/seeds/001_…),
// unchanged but for the indentation the printed page lost (gofmt). Tests build and run it.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"time"
)

const server = "http://localhost:3000"

func main() {
	workerID := fmt.Sprintf("go-%d", time.Now().UnixNano()%100000)
	labels := []string{"go"}

	// Register
	postJSON("/api/workers/register", map[string]any{
		"worker_id": workerID, "labels": labels,
	})

	for {
		// Claim
		resp := postJSON("/api/jobs/claim", map[string]any{
			"worker_id": workerID, "labels": labels, "lease_ttl_secs": 60,
		})
		if resp == nil {
			time.Sleep(2 * time.Second)
			continue
		}

		job := resp["job"].(map[string]any)
		lease := resp["lease"].(map[string]any)
		leaseID := lease["lease_id"].(string)
		fmt.Printf("[%s] Claimed: %s\n", workerID, job["job_id"])

		// Heartbeat goroutine
		done := make(chan struct{})
		go func() {
			for {
				select {
				case <-done:
					return
				case <-time.After(10 * time.Second):
					postJSON(fmt.Sprintf("/api/jobs/%s/heartbeat", leaseID), nil)
				}
			}
		}()

		// Execute
		cmd := exec.Command("sh", "-c", job["command"].(string))
		output, err := cmd.CombinedOutput()
		close(done)

		// Report
		if err == nil {
			postJSON(fmt.Sprintf("/api/jobs/%s/complete", leaseID),
				map[string]any{"outputs": map[string]string{}})
		} else {
			postJSON(fmt.Sprintf("/api/jobs/%s/fail", leaseID),
				map[string]any{"error": string(output), "retryable": true})
		}
	}
}

func postJSON(path string, body any) map[string]any {
	var buf bytes.Buffer
	if body != nil {
		json.NewEncoder(&buf).Encode(body)
	}
	resp, err := http.Post(server+path, "application/json", &buf)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var result map[string]any
	json.NewDecoder(resp.Body).Decode(&result)
	return result
}
