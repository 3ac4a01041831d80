package main

// Cross-check harness (not part of kaudit): evaluates request attributes with the upstream audit policy
// evaluator. Usage: xcheck POLICY < requests.jsonl  -> one decision a line, kaudit's eval format.
import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"

	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

type in struct {
	User *struct {
		Name   string   `json:"name"`
		Groups []string `json:"groups"`
	} `json:"user"`
	Verb            string `json:"verb"`
	ResourceRequest bool   `json:"resourceRequest"`
	APIGroup        string `json:"apiGroup"`
	APIVersion      string `json:"apiVersion"`
	Namespace       string `json:"namespace"`
	Resource        string `json:"resource"`
	Subresource     string `json:"subresource"`
	Name            string `json:"name"`
	Path            string `json:"path"`
}

func main() {
	p, err := policy.LoadPolicyFromFile(os.Args[1])
	if err != nil {
		_, _ = io.Copy(io.Discard, os.Stdin) // let the caller finish writing
		fmt.Println(`{"loadError":` + mustJSON(err.Error()) + `}`)
		return
	}
	ev := policy.NewPolicyRuleEvaluator(p)
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var a in
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			panic(err)
		}
		rec := &authorizer.AttributesRecord{Verb: a.Verb, ResourceRequest: a.ResourceRequest, APIGroup: a.APIGroup, APIVersion: a.APIVersion, Namespace: a.Namespace, Resource: a.Resource, Subresource: a.Subresource, Name: a.Name, Path: a.Path}
		if a.User != nil {
			rec.User = &user.DefaultInfo{Name: a.User.Name, Groups: a.User.Groups}
		}
		c := ev.EvaluatePolicyRule(rec)
		st := []string{}
		for _, s := range c.OmitStages {
			st = append(st, string(s))
		}
		sort.Strings(st)
		out := map[string]any{"level": string(c.Level), "omitStages": st, "omitManagedFields": c.OmitManagedFields}
		b, _ := json.Marshal(out)
		fmt.Println(string(b))
	}
}

func mustJSON(s string) string { b, _ := json.Marshal(s); return string(b) }
