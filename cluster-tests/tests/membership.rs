//! Membership at runtime (cluster operations issue): a fourth and fifth node are added to a
//! three-node cluster under load (learner → catch up → voter), then two nodes are removed — two
//! followers in one test, the leader and a follower in the other — with the background load
//! recording every answer and the full invariant checker (`chaos::checker`) run over the
//! remaining members at the end. Both are the `grow-shrink` scenarios of `chaos::scenarios`.
//!
//! Also: the admin client sent to a follower follows its 421 to the leader.

use std::time::Duration;

use rekor_cluster_tests::chaos::assert_scenario_passes;
use rekor_cluster_tests::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_two_nodes_under_load_then_remove_two_followers() {
    assert_scenario_passes("grow-shrink").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_two_nodes_under_load_then_remove_the_leader_and_a_follower() {
    assert_scenario_passes("grow-shrink-leader").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_sent_to_a_follower_follow_it_to_the_leader() {
    let mut cluster = Cluster::start(3, &[]).await.expect("cluster starts");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    let follower = (leader + 1) % 3;
    let follower_address = cluster.nodes[follower].spec.internal_addr();
    let leader_address = cluster.nodes[leader].spec.internal_addr();

    let (member, _) = cluster
        .start_new_node(4, &[], Duration::from_secs(30))
        .await
        .unwrap();

    let (stdout, stderr) = cluster
        .admin_output(&[
            "node",
            "add",
            "--target",
            &follower_address,
            "--member",
            &member,
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    assert!(
        stderr.contains("not the leader") && stderr.contains(&leader_address),
        "the client did not say it followed the leader: {stderr:?}"
    );
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["added"], 4, "{answer:#}");
    assert_eq!(answer["voter"], true, "{answer:#}");
    let status = cluster.status(leader).await.unwrap();
    let voters: Vec<u64> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["voter"] == true)
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(voters, [1, 2, 3, 4], "{status:#}");

    // `node remove` and `freeze` follow the leader the same way.
    let (_, stderr) = cluster
        .admin_output(&["node", "remove", "--target", &follower_address, "--id", "4"])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    assert!(stderr.contains(&leader_address), "{stderr:?}");
    let (stdout, stderr) = cluster
        .admin_output(&["freeze", "--target", &follower_address])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    assert!(stderr.contains(&leader_address), "{stderr:?}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(answer["frozen_at_size"].is_u64(), "{answer:#}");

    // The 421 itself names the leader in its JSON body.
    let (operator, scheme) = cluster
        .internal_client(rekor_cluster_tests::pki::Identity::Operator)
        .unwrap();
    let response = operator
        .post(format!(
            "{scheme}://{follower_address}/internal/v1/admin/remove-node"
        ))
        .header(
            rekor_raft::network::CLUSTER_SECRET_HEADER,
            std::fs::read_to_string(&cluster.secret_file)
                .unwrap()
                .trim(),
        )
        .json(&serde_json::json!({"remove": [4]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 421);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["leader_id"].as_u64(),
        Some(cluster.nodes[leader].spec.id),
        "{body:#}"
    );
    assert_eq!(body["leader_internal_addr"], leader_address, "{body:#}");
}
