-- Session states are exactly the controller's state machine
-- (lab_controller/controller/sessions.py SessionState): assigned -> armed -> running ->
-- stopping -> finished | aborted | failed, and interrupted (rig silent, may resume).
-- 'ready' from 0001 was never used.
ALTER TABLE sessions DROP CONSTRAINT sessions_state_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_state_check
    CHECK (state IN ('assigned', 'armed', 'running', 'stopping',
                     'finished', 'aborted', 'failed', 'interrupted'));

-- Positions are stored as sent on the wire: millimetres (docs/protocol.md). This corrects the
-- unit in the comments of 0002/0003.
COMMENT ON COLUMN pose_frames.poses IS
    'real[tracker][7]: px, py, pz (millimetres), qx, qy, qz, qw (wire order, docs/protocol.md 6.2)';
