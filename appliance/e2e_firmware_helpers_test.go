package appliance

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"testing"
	"time"

	"github.com/flownexus/flownexus/webui"
)

// upload posts an image as the web UI's form does; fields may come after
// the file. It returns the status and the decoded answer.
func (ta *testAppliance) upload(fields map[string]string, fieldsFirst bool, image []byte) (int, map[string]any) {
	ta.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	writeFields := func() {
		for k, v := range fields {
			mw.WriteField(k, v)
		}
	}
	if fieldsFirst {
		writeFields()
	}
	if image != nil {
		fw, _ := mw.CreateFormFile("file", "app.bin")
		fw.Write(image)
	}
	if !fieldsFirst {
		writeFields()
	}
	mw.Close()
	req, _ := http.NewRequest("POST", ta.url+"/api/v1/firmware", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+ta.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ta.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func (ta *testAppliance) mustUpload(version string, image []byte) string {
	ta.t.Helper()
	code, out := ta.upload(map[string]string{"version": version}, false, image)
	if code != http.StatusCreated {
		ta.t.Fatalf("upload %s: %d %v", version, code, out)
	}
	return out["id"].(string)
}

func (ta *testAppliance) deploy(imageID string, req webui.DeployRequest) string {
	ta.t.Helper()
	var out struct{ ID string }
	ta.do("POST", "/api/v1/firmware/"+imageID+"/deployments", req, http.StatusCreated, &out)
	return out.ID
}

func (ta *testAppliance) deployment(id string) webui.Deployment {
	ta.t.Helper()
	var d webui.Deployment
	ta.do("GET", "/api/v1/deployments/"+id, nil, http.StatusOK, &d)
	return d
}

// waitDeployment polls until cond holds for the deployment.
func (ta *testAppliance) waitDeployment(t *testing.T, id string, what string, timeout time.Duration, cond func(webui.Deployment) bool) webui.Deployment {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d := ta.deployment(id)
		if cond(d) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func finished(d webui.Deployment) bool {
	return d.Counts["succeeded"]+d.Counts["failed"] == len(d.Devices)
}
