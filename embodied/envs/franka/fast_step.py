"""robosuite's env step with its per-substep Python overhead removed, same torques, same physics.

robosuite runs its OSC_POSE controller at every physics substep (25 per 20 Hz step) through layers of
Python objects: on a 2-core CPU that costs ~0.4 ms a substep, several times MuJoCo's own step. Here the
first substep of each env step goes through robosuite unchanged (it sets the new goal, the gripper command
and robosuite's bookkeeping); the remaining substeps compute the same OSC torques from the controller's
goal in one numba-compiled function (numba is a robosuite dependency) that follows
``OperationalSpaceController.run_controller``, ``opspace_matrices`` and ``nullspace_torques`` operation by
operation, and write them straight to ``data.ctrl``. tests/envs/test_fast_step.py checks that joint
trajectories match robosuite's own stepping to 1e-9 through grasps and contacts.
"""

from __future__ import annotations

import mujoco
import numba
import numpy as np
from robosuite.controllers.parts.arm.osc import OperationalSpaceController


class UnsupportedController(ValueError):
    """The env's controller setup is not the plain one this stepper reproduces; use robosuite's step."""


class FastStepper:
    """Steps one single-arm robosuite env whose arm runs a fixed-impedance delta OSC without interpolation."""

    def __init__(self, sim_env):
        if len(sim_env.robots) != 1 or len(sim_env.robots[0].arms) != 1 or not sim_env.lite_physics:
            raise UnsupportedController("one single-arm robot with lite_physics is supported")
        robot = sim_env.robots[0]
        arm = robot.arms[0]
        osc = robot.part_controllers[arm]
        if not (
            isinstance(osc, OperationalSpaceController)
            and osc.input_type == "delta"
            and osc.impedance_mode == "fixed"
            and osc.interpolator_pos is None
            and osc.interpolator_ori is None
            and osc.position_limits is None
            and isinstance(osc.ref_name, str)
        ):
            raise UnsupportedController(f"controller {type(osc).__name__} with these settings is not supported")
        gripper = robot.part_controllers.get(robot.get_gripper_name(arm))
        if gripper is not None and getattr(gripper, "interpolator", None) is not None:
            raise UnsupportedController("gripper interpolation is not supported")
        self.env = sim_env
        self.arm = arm
        self.osc = osc
        self.model = sim_env.sim.model._model
        self.data = sim_env.sim.data._data
        self.substeps = int(sim_env.control_timestep / sim_env.model_timestep)
        self.eef_site = self.model.site(osc.ref_name).id
        self.center_site = self.model.site(f"{osc.naming_prefix}{osc.part_name}_center").id
        self.qpos_index = np.asarray(osc.qpos_index)
        self.qvel_index = np.asarray(osc.qvel_index)
        self.actuators = np.asarray(robot._ref_actuators_indexes_dict[arm])
        self.ctrl_low = self.model.actuator_ctrlrange[self.actuators, 0].copy()
        self.ctrl_high = self.model.actuator_ctrlrange[self.actuators, 1].copy()
        nv = self.model.nv
        self._jacp, self._jacr = np.zeros((3, nv)), np.zeros((3, nv))
        self._center_jacp, self._center_jacr = np.zeros((3, nv)), np.zeros((3, nv))
        self._mass = np.zeros((nv, nv))
        self._mass_index = np.ix_(self.qvel_index, self.qvel_index)

    def step(self, action: np.ndarray):
        """Same contract as robosuite's ``env.step``: (observations, reward, done, info)."""
        env, model, data = self.env, self.model, self.data
        if env.done:
            raise ValueError("executing action in terminated episode")
        env.timestep += 1
        # robosuite builds new controller objects at every reset: use the current one.
        self.osc = env.robots[0].part_controllers[self.arm]
        # Substep 1: robosuite's own path sets the goal, the gripper command and its buffers.
        env.sim.step1()
        env._pre_action(action, True)
        env.sim.step2()
        osc = self.osc
        goal = (np.asarray(osc.goal_pos, np.float64), np.asarray(osc.goal_ori, np.float64), osc.kp, osc.kd,
                np.asarray(osc.initial_joint, np.float64), osc.uncoupling)  # fmt: skip
        for _ in range(self.substeps - 1):
            mujoco.mj_step1(model, data)
            data.ctrl[self.actuators] = self._osc_torques(goal)
            mujoco.mj_step2(model, data)
        env.cur_time += env.control_timestep
        reward, done, info = env._post_action(action)
        # robosuite samples observables at the last substep; force_update reads the same final state.
        return env._get_observations(force_update=True), reward, done, info

    def _osc_torques(self, goal: tuple) -> np.ndarray:
        """robosuite's OSC torques for the current state and ``goal`` (the controller's goal and gains),
        clipped to the actuators' control range as robosuite's robot does."""
        model, data = self.model, self.data
        mujoco.mj_jacSite(model, data, self._jacp, self._jacr, self.eef_site)
        mujoco.mj_jacSite(model, data, self._center_jacp, self._center_jacr, self.center_site)
        mujoco.mj_fullM(model, self._mass, data.qM)
        return _osc_kernel(
            self._jacp, self._jacr, self._center_jacp, self._center_jacr, self._mass, data.qvel, data.qpos,
            data.qfrc_bias, data.site_xpos[self.eef_site], data.site_xmat[self.eef_site],
            data.site_xpos[self.center_site], data.site_xmat[self.center_site], self.qpos_index, self.qvel_index,
            *goal, self.ctrl_low, self.ctrl_high,
        )  # fmt: skip


@numba.njit(cache=True)
def _cross(a, b):
    """np.cross for 3-vectors (numba compiles np.cross slowly: ~2.5 s)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


@numba.njit(cache=True)
def _osc_kernel(jacp, jacr, center_jacp, center_jacr, mass_full, qvel, qpos, qfrc_bias, eef_pos, eef_mat, origin_pos,
                origin_mat, qpos_index, qvel_index, goal_pos, goal_ori, kp, kd, initial_joint, uncoupling, ctrl_low,
                ctrl_high):  # fmt: skip
    """OperationalSpaceController.run_controller (fixed impedance, no interpolation) as one compiled function.

    Array building is written out by hand: numba compiles np.vstack/np.concatenate/np.cross slowly, and the
    first call of a fresh install pays that compile (later processes load it from numba's cache).
    """
    n = qvel_index.shape[0]
    J_full = np.empty((6, n))  # rows 0-2: position Jacobian, 3-5: orientation Jacobian
    mass = np.empty((n, n))
    joint_pos = np.empty(n)
    joint_vel = np.empty(n)
    for j in range(n):
        J_full[0:3, j] = jacp[:, qvel_index[j]]
        J_full[3:6, j] = jacr[:, qvel_index[j]]
        joint_pos[j] = qpos[qpos_index[j]]
        joint_vel[j] = qvel[qvel_index[j]]
        for k in range(n):
            mass[j, k] = mass_full[qvel_index[j], qvel_index[k]]
    J_pos = J_full[0:3]
    J_ori = J_full[3:6]
    ref_ori = eef_mat.reshape(3, 3)
    origin_ori = origin_mat.reshape(3, 3)
    desired_pos = origin_pos + origin_ori @ goal_pos
    desired_ori = origin_ori @ goal_ori
    # orientation_error (robosuite.utils.control_utils): half the sum of cross products of the axes
    ori_error = 0.5 * (
        _cross(ref_ori[:, 0], desired_ori[:, 0])
        + _cross(ref_ori[:, 1], desired_ori[:, 1])
        + _cross(ref_ori[:, 2], desired_ori[:, 2])
    )
    vel_pos_error = -(jacp @ qvel - center_jacp @ qvel)
    vel_ori_error = -(jacr @ qvel - center_jacr @ qvel)
    desired_force = (desired_pos - eef_pos) * kp[0:3] + vel_pos_error * kd[0:3]
    desired_torque = ori_error * kp[3:6] + vel_ori_error * kd[3:6]
    # opspace_matrices
    mass_inv = np.linalg.inv(mass)
    lambda_full = np.linalg.pinv(J_full @ mass_inv @ J_full.T)
    jbar = mass_inv @ J_full.T @ lambda_full
    nullspace = np.eye(n) - jbar @ J_full
    wrench = np.empty(6)
    if uncoupling:
        wrench[0:3] = np.linalg.pinv(J_pos @ mass_inv @ J_pos.T) @ desired_force
        wrench[3:6] = np.linalg.pinv(J_ori @ mass_inv @ J_ori.T) @ desired_torque
    else:
        wrench[0:3] = desired_force
        wrench[3:6] = desired_torque
        wrench = lambda_full @ wrench
    torques = J_full.T @ wrench
    for j in range(n):
        torques[j] += qfrc_bias[qvel_index[j]]
    # nullspace_torques with robosuite's joint_kp=10 and critical damping
    joint_kp = 10.0
    joint_kv = np.sqrt(joint_kp) * 2
    pose_torques = mass @ (joint_kp * (initial_joint - joint_pos) - joint_kv * joint_vel)
    return np.minimum(np.maximum(torques + nullspace.T @ pose_torques, ctrl_low), ctrl_high)
