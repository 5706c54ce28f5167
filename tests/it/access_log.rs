//! The access log as an operator reads it: one line per request of a real skopeo pull, JSON or
//! text, to a file that logrotate can move (SIGHUP) or that rotates itself by size.

use super::bw::{local_upstream, Breakwater};
use super::support::image::{Format, Image};
use super::support::registry::Registry;
use super::support::{http_client, wait_until, TempDir};
use std::path::Path;
use std::time::Duration;

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn skopeo_pull(image: &str, dest: &Path) {
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{image}"))
        .arg(format!("dir:{}", dest.display()))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skopeo_pull_is_logged_line_by_line_and_the_file_reopens_on_sighup() {
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 101);
    reg.pusher().push_image("team/app", "v1", &img).await;
    let tmp = TempDir::new("accesslog");
    let log = tmp.path().join("access.log");
    let body = format!(
        "{}\n[log]\naccess = \"{}\"\nformat = \"json\"\n",
        local_upstream(&reg.url(), "10m", ""),
        log.display()
    );
    let bw = Breakwater::start(&body).await;
    let image = format!("{}/local/team/app:v1", bw.host());
    skopeo_pull(&image, &tmp.path().join("cold"));
    let layer = &img.layers[1];
    let wanted = format!("/v2/local/team/app/blobs/{}", layer.digest);
    assert!(
        wait_until(Duration::from_secs(5), || lines(&log)
            .iter()
            .any(|l| l.contains(&wanted)))
        .await,
        "no line for the layer: {:?}",
        lines(&log)
    );
    skopeo_pull(&image, &tmp.path().join("warm"));
    let wait_for = |n: usize| {
        let log = log.clone();
        let wanted = wanted.clone();
        async move {
            wait_until(Duration::from_secs(5), || {
                lines(&log).iter().filter(|l| l.contains(&wanted)).count() >= n
            })
            .await
        }
    };
    assert!(wait_for(2).await);
    let entries: Vec<serde_json::Value> = lines(&log)
        .iter()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    println!("access log of two skopeo pulls:");
    for l in lines(&log) {
        println!("{l}");
    }
    let layer_lines: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["path"] == wanted.as_str())
        .collect();
    assert_eq!(layer_lines.len(), 2);
    for (e, cache) in layer_lines.iter().zip(["miss", "hit"]) {
        assert_eq!(e["method"], "GET");
        assert_eq!(e["status"], 200);
        assert_eq!(e["bytes"], layer.data.len() as u64);
        assert_eq!(e["cache"], cache);
        assert_eq!(e["upstream"], "local");
        assert_eq!(e["client"], "127.0.0.1");
        assert!(e["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
    }
    let manifest = entries
        .iter()
        .find(|e| e["path"] == "/v2/local/team/app/manifests/v1" && e["method"] == "GET")
        .expect("a manifest line");
    assert_eq!(manifest["cache"], "miss");

    // logrotate moves the file and sends SIGHUP: new lines go to a new file at the same path.
    // (The writer writes queued lines within 20 ms: let the pull's last ones land first.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    let moved = tmp.path().join("access.log.1");
    std::fs::rename(&log, &moved).unwrap();
    let before = lines(&moved).len();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &bw.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = http_client()
        .get(format!("{}/v2/local/team/app/tags/list", bw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        wait_until(Duration::from_secs(5), || lines(&log)
            .iter()
            .any(|l| l.contains("/tags/list")))
        .await,
        "no new file after SIGHUP"
    );
    assert_eq!(lines(&moved).len(), before, "the moved file kept growing");
    assert!(bw.log_text().contains("access log reopened"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_access_log_rotates_by_size() {
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Docker, 102);
    reg.pusher().push_image("team/app", "v1", &img).await;
    let tmp = TempDir::new("accesslog-size");
    let log = tmp.path().join("access.log");
    let body = format!(
        "{}\n[log]\naccess = \"{}\"\nmax_bytes = \"1KiB\"\n",
        local_upstream(&reg.url(), "10m", ""),
        log.display()
    );
    let bw = Breakwater::start(&body).await;
    let url = format!("{}/v2/local/team/app/tags/list", bw.url());
    for _ in 0..20 {
        assert_eq!(http_client().get(&url).send().await.unwrap().status(), 200);
    }
    let rotated = tmp.path().join("access.log.1");
    assert!(
        wait_until(Duration::from_secs(5), || rotated.exists()).await,
        "no rotation"
    );
    let text = lines(&log);
    let last = text.last().expect("lines after rotation");
    // time client method path status bytes duration cache= upstream= user=
    let fields: Vec<&str> = last.split(' ').collect();
    assert_eq!(fields.len(), 10, "{last}");
    assert_eq!(
        &fields[1..5],
        &["127.0.0.1", "GET", "/v2/local/team/app/tags/list", "200"]
    );
    assert!(
        fields[6].ends_with("ms") && fields[8] == "upstream=local" && fields[9] == "user=-",
        "{last}"
    );
    assert!(std::fs::metadata(&rotated).unwrap().len() >= 1024);
}
