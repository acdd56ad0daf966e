// Command kstatus prints the status kstatus (sigs.k8s.io/cli-utils) computes for Kubernetes objects.
//
// It reads one object, or a List of them, as JSON on stdin (`kubectl get -o json`) and writes
// one JSON line per object: {"name": ..., "status": ..., "message": ...}. The integration tests
// use it to check how Flux, kpt and `kubectl wait`-style tools built on kstatus read a
// ScalableBackend, with kstatus's own code rather than a re-implementation of its rules.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	var object unstructured.Unstructured
	if err := object.UnmarshalJSON(data); err != nil {
		return err
	}
	objects := []unstructured.Unstructured{object}
	if object.IsList() {
		list, err := object.ToList()
		if err != nil {
			return err
		}
		objects = list.Items
	}
	encoder := json.NewEncoder(out)
	for i := range objects {
		result, err := status.Compute(&objects[i])
		if err != nil {
			return fmt.Errorf("%s: %w", objects[i].GetName(), err)
		}
		line := verdict{Name: objects[i].GetName(), Status: result.Status.String(), Message: result.Message}
		if err := encoder.Encode(line); err != nil {
			return err
		}
	}
	return nil
}
