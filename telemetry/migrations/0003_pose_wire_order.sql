-- Pose component order follows the wire protocol (docs/protocol.md §6.2): per tracker
-- [x, y, z, qx, qy, qz, qw], scalar last, so the controller stores the rig's float32 buffer
-- as it came. This supersedes the order in the comment of 0002: poses[t][1..7] =
-- px, py, pz (metres), qx, qy, qz, qw.
DROP VIEW pose_samples;
CREATE VIEW pose_samples AS
SELECT f.time, f.rig_time, f.session_id, f.rig_id, f.seq, t.tracker,
       f.poses[t.tracker + 1][1] AS px, f.poses[t.tracker + 1][2] AS py,
       f.poses[t.tracker + 1][3] AS pz, f.poses[t.tracker + 1][4] AS qx,
       f.poses[t.tracker + 1][5] AS qy, f.poses[t.tracker + 1][6] AS qz,
       f.poses[t.tracker + 1][7] AS qw,
       ((f.valid_mask >> t.tracker) & 1) = 1 AS valid
FROM pose_frames f
CROSS JOIN LATERAL generate_series(0, array_length(f.poses, 1) - 1) AS t (tracker);
COMMENT ON COLUMN pose_frames.poses IS
    'real[tracker][7]: px, py, pz (metres), qx, qy, qz, qw (wire order, docs/protocol.md 6.2)';
