package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/kato-manager/kato-manager/remote"
)

// HostInstance is a row of a list merged over hosts: an instance and its
// host.
type HostInstance struct {
	Host string `json:"host"`
	InstanceView
}

// HostFailure is a host that gave no answer to a merged command: its
// name and what went wrong there, on one line.
type HostFailure struct {
	Host    string
	Message string
}

// MergeLists merges the answers of `list --json` on several hosts
// (remote.Each): every host's instances, in the hosts' order, and the
// hosts that failed or answered what is not a list.
func MergeLists(results []remote.Result) (rows []HostInstance, failed []HostFailure) {
	for _, r := range results {
		var views []InstanceView
		if r.Err == nil {
			if err := json.Unmarshal(r.Stdout, &views); err != nil {
				r.Err = fmt.Errorf("%s: unreadable answer of list --json: %w", r.Host, err)
			}
		}
		if r.Err != nil {
			failed = append(failed, HostFailure{Host: r.Host, Message: r.Failure()})
			continue
		}
		for _, v := range views {
			rows = append(rows, HostInstance{Host: r.Host, InstanceView: v})
		}
	}
	return rows, failed
}

// HostStatus is one host's part of a status merged over hosts: its status,
// or the error that kept it from answering.
type HostStatus struct {
	Host  string `json:"host"`
	Error string `json:"error,omitempty"`
	*Status
}

// MergeStatuses merges the answers of `status --json` on several hosts
// (remote.Each), in the hosts' order. A host whose status exited 1 still
// answered: something there is unhealthy. healthy is whether every host
// answered and is healthy.
func MergeStatuses(results []remote.Result) (all []HostStatus, healthy bool) {
	healthy = true
	for _, r := range results {
		hs := HostStatus{Host: r.Host}
		var exit *remote.ExitError
		if r.Err == nil || errors.As(r.Err, &exit) && exit.Code == 1 {
			var st Status
			if err := json.NewDecoder(bytes.NewReader(r.Stdout)).Decode(&st); err == nil {
				hs.Status = &st
			} else if r.Err == nil {
				r.Err = fmt.Errorf("%s: unreadable answer of status --json: %w", r.Host, err)
			}
		}
		if hs.Status == nil {
			hs.Error = r.Failure()
		}
		if hs.Status == nil || !hs.Status.Healthy() {
			healthy = false
		}
		all = append(all, hs)
	}
	return all, healthy
}
