//! The conformance cases, grouped by what they exercise.
//!
//! [`for_each_case!`](crate::for_each_case) lists every case once; the runner
//! and the per-backend `#[test]` instantiations are both generated from it.

pub mod config;
pub mod container;
pub mod decode;
pub mod device;
pub mod dma;
pub mod dma_fault;
pub mod driver;
pub mod group;
pub mod iommufd;
pub mod irq;
pub mod msix_kernel;
pub mod noiommu;
pub mod nvme;
pub mod profile;
pub mod reset;
pub mod tool;
pub mod uapi;

use crate::Case;

/// Calls `$callback! { module::case, ... }` with every case of the suite.
#[macro_export]
macro_rules! for_each_case {
    ($callback:ident) => {
        $callback! {
            container::api_version_is_zero,
            container::type1_extensions_are_offered_and_noiommu_is_not,
            container::set_iommu_without_a_group_is_invalid,
            container::set_iommu_twice_is_invalid,
            container::set_iommu_to_a_type_no_driver_offers_is_not_found,
            container::iommu_calls_before_set_iommu_are_invalid,
            container::second_group_joins_a_container_with_an_iommu,
            container::iommu_info_reports_4k_pages_and_ranges_without_the_msi_window,
            container::extension_answers_match_type1,
            container::iommu_info_reports_the_vtd_geometry,
            group::group_is_viable_and_unattached_when_opened,
            group::set_container_marks_the_group_attached,
            group::unset_container_detaches_the_group,
            group::opening_a_group_twice_is_busy,
            group::missing_group_is_not_found,
            group::open_device_before_set_iommu_is_invalid,
            group::unknown_device_name_is_not_found,
            group::device_name_with_nul_is_invalid,
            group::keep_alive_is_unsupported_upstream,
            group::set_container_twice_is_invalid,
            group::unset_container_with_an_open_device_is_busy,
            group::a_device_can_be_opened_twice,
            group::devices_behind_a_pci_bridge_share_a_group,
            group::group_with_a_device_on_another_driver_is_not_viable,
            group::device_name_of_a_page_or_more_is_invalid,
            group::empty_device_name_is_not_found,
            group::device_name_options_after_a_space_are_invalid_without_sr_iov,
            device::edu_device_info_is_pci_with_nine_regions_and_five_irqs,
            device::edu_bar0_is_one_mib_readable_writable_mmappable,
            device::absent_bars_have_no_size_and_no_flags,
            device::config_region_is_readable_writable_and_never_mmapped,
            device::edu_config_space_has_qemu_ids,
            device::nvme_config_space_has_qemu_ids,
            device::nvme_config_space_matches_qemu_layout,
            device::edu_config_space_matches_qemu_layout,
            device::edu_identification_register_reads_through_mmap,
            device::edu_liveness_register_inverts_what_is_written,
            device::region_read_past_the_end_is_out_of_range,
            device::vga_region_of_a_non_vga_device_and_indexes_past_the_table_are_invalid,
            device::irq_info_past_the_last_index_is_invalid,
            device::edu_rom_region_is_empty,
            device::nvme_bar0_is_mmappable_with_the_msix_mappable_capability,
            device::bar_read_through_the_device_file_matches_the_mapping,
            device::bar_read_straddling_the_end_is_cut_short,
            device::config_read_straddling_the_end_faults,
            device::edu_reset_matches_the_reset_flag,
            device::nvme_advertises_reset_and_resets,
            dma::overlapping_dma_map_already_exists,
            dma::unmap_of_an_unmapped_range_unmaps_nothing,
            dma::misaligned_empty_or_permissionless_maps_are_invalid,
            dma::unmap_splitting_a_mapping_is_invalid,
            dma::unmap_covering_two_mappings_returns_both_sizes,
            dma::dma_avail_counts_down_per_mapping,
            dma::a_dropped_mapping_is_unmapped_and_its_iova_maps_again,
            dma::allocated_mappings_land_inside_the_reported_ranges_aligned_and_guarded,
            dma::a_mapping_larger_than_its_memory_faults_and_frees_its_iova,
            dma::iova_exhaustion_is_no_space_and_a_dropped_mapping_makes_room,
            irq::nvme_msix_has_65_vectors_noresize_on_6_1_only,
            irq::data_none_trigger_fires_bound_vectors_instead_of_unbinding,
            irq::bound_vectors_appear_in_proc_interrupts,
            irq::edu_irq_info_for_every_index,
            irq::nvme_irq_info_for_every_index,
            irq::binding_past_the_vector_count_is_invalid,
            irq::growing_an_enabled_msix_index_is_invalid,
            irq::rebinding_a_vector_moves_it_to_the_new_eventfd,
            irq::disable_needs_an_enabled_index_and_unbinds_everything,
            irq::bool_trigger_fires_the_flagged_vectors,
            irq::msix_mask_and_unmask_are_unsupported,
            irq::calls_on_an_index_with_no_vectors_are_invalid,
            irq::msix_cannot_be_enabled_while_intx_is,
            irq::edu_msi_binds_fires_and_is_listed,
            irq::edu_intx_binds_fires_unmasks_and_stays_listed_until_disabled,
            irq::binding_a_non_eventfd_is_invalid_and_changes_nothing,
            irq::closing_the_device_releases_its_vectors,
            irq::unbinding_on_a_disabled_index_is_refused_instead_of_enabling_it,
            irq::enabling_an_enabled_index_is_refused_and_keeps_its_bindings,
            irq::vectors_enabled_unbound_bind_one_at_a_time,
            irq::huge_vector_counts_are_invalid,
            irq::device_msi_needs_bus_master_enable_but_loopback_does_not,
            irq::intx_unmask_eventfd_unmasks_like_the_ioctl,
            irq::binding_past_the_host_vector_budget_is_no_space,
            driver::edu_driver_computes_factorials_with_completion_interrupts,
            driver::edu_driver_dma_round_trip_through_the_iommu,
            driver::nvme_controller_enable_sets_ready,
            nvme::nvme_identify_returns_qemus_controller_and_namespace,
            nvme::nvme_identify_of_other_namespaces_is_what_qemu_returns,
            nvme::nvme_number_of_queues_grants_qemus_64_pairs,
            nvme::nvme_writes_read_back_across_prp_list_boundaries,
            nvme::nvme_io_wraps_the_queues_and_never_overfills_one,
            nvme::nvme_a_reset_mid_run_fails_what_was_in_flight_and_keeps_what_was_written,
            nvme::nvme_write_zeroes_and_deallocate_read_back_as_qemu_returns_them,
            nvme::nvme_each_queue_completes_on_its_own_vector,
            nvme::nvme_read_past_the_end_is_lba_out_of_range,
            nvme::nvme_an_invalid_opcode_is_invalid_command_opcode,
            nvme::nvme_io_to_an_invalid_namespace_is_refused,
            nvme::nvme_queue_creation_with_a_bad_id_or_size_is_refused,
            nvme::nvme_deleting_a_queue_that_does_not_exist_is_invalid_queue_id,
            nvme::nvme_a_prp_entry_with_a_bad_offset_is_prp_offset_invalid,
            nvme::nvme_admin_commands_with_bad_fields_get_qemus_status,
            nvme::nvme_awaited_completions_carry_the_data_and_the_status,
            device::bar_io_at_the_end_or_in_an_absent_region_is_invalid,
            dma::dma_map_past_the_buffer_faults,
            dma::device_dma_round_trips_typed_values_between_barriers,
            dma::huge_page_backed_dma_memory_is_mapped_and_used,
            config::edu_config_space_matches_the_kernels_dump,
            config::nvme_config_space_matches_the_kernels_dump,
            config::command_register_keeps_only_qemus_writable_bits,
            config::header_writes_stick_only_in_cache_line_size_and_interrupt_line,
            config::bar_writes_read_back_the_size_mask_and_aligned_addresses,
            config::msi_control_enable_sticks_only_while_msi_is_enabled,
            config::msix_control_follows_the_ioctls_and_ignores_writes,
            config::config_space_is_restored_when_the_device_is_closed,
            reset::reset_keeps_msix_vectors_bound_listed_and_firing,
            reset::nvme_reset_clears_cc_and_the_interrupt_mask_but_keeps_the_admin_queues,
            reset::reset_leaves_config_space_as_it_was,
            reset::a_mapping_reaches_the_registers_again_after_a_reset,
            reset::reset_with_memory_decode_off_leaves_it_off,
            reset::refused_edu_reset_leaves_registers_and_config_alone,
            reset::reset_keeps_intx_bound_listed_and_firing,
            decode::bar_file_access_with_memory_decode_off_is_eio,
            decode::mapped_bar_access_with_memory_decode_off_is_eio,
            decode::mapped_bar_access_after_a_reset_with_decode_off_is_eio,
            dma_fault::dma_through_an_unmapped_iova_faults_and_the_host_logs_it,
            dma_fault::dma_across_the_end_of_a_mapping_moves_the_mapped_part_and_faults_the_rest,
            dma_fault::dma_write_through_a_read_only_mapping_faults_and_moves_nothing,
            nvme::nvme_a_transfer_through_an_unmapped_iova_completes_and_the_iommu_faults,
            iommufd::cdev_and_iommufd_exist_on_6_12_only,
            iommufd::a_cdev_answers_nothing_before_bind,
            iommufd::binding_a_non_iommufd_is_ebadfd_and_binding_twice_is_invalid,
            iommufd::attaching_a_bogus_page_table_id_is_not_found,
            iommufd::iova_ranges_are_sorted_and_disjoint_and_attaching_narrows_them,
            iommufd::overlapping_maps_are_eexist_and_wrapping_maps_eoverflow,
            iommufd::unmap_of_nothing_or_part_of_an_area_is_not_found,
            iommufd::unmap_all_removes_every_area_and_then_succeeds_with_nothing,
            iommufd::destroying_an_ioas_in_use_is_busy_and_after_detach_succeeds,
            iommufd::the_group_and_the_bound_cdev_exclude_each_other,
            iommufd::msi_and_msix_eventfds_read_empty_until_triggered,
            iommufd::a_map_at_a_kernel_chosen_iova_lands_inside_the_reported_ranges,
            noiommu::noiommu_groups_are_named_noiommu_n,
            noiommu::a_noiommu_container_takes_only_the_noiommu_driver,
            noiommu::noiommu_map_unmap_and_info_are_enotty,
            noiommu::noiommu_groups_taint_the_kernel,
            noiommu::a_noiommu_device_has_no_cdev,
            noiommu::edu_dma_reaches_a_buffer_at_its_physical_address,
            uapi::edu_bar0_maps_in_part_and_read_only,
            uapi::partial_maps_the_kernel_refuses_are_invalid,
            uapi::edu_feature_probes_get_vfio_pcis_answers,
            uapi::device_feature_calls_the_kernel_refuses_are_invalid,
            uapi::root_bus_devices_cannot_be_hot_reset,
            uapi::unmap_all_returns_the_total_and_gives_back_dma_entries,
            uapi::iova_ranges_follow_the_iommu_address_width,
            uapi::a_bus_reset_behind_the_bridge_needs_the_group_of_every_device_on_the_bus,
            msix_kernel::raw_binds_past_the_enabled_msix_vectors_grow_the_index_on_6_12_only,
            msix_kernel::vfio_vector_lines_name_the_kernels_msi_domain,
            tool::vfio_tool_lists_the_guest_as_the_mock_guest,
            // Last: it removes edu, and the host brings it back for the generic cases.
            device::removal_asks_for_the_device_and_waits_for_its_release,
        }
    };
}

/// The case that removes `edu` and has the host bring it back: the kernel
/// then gives the device's BAR a new address (the firmware's placement is
/// gone), which the config-space cases of a later run in the same boot
/// would see. A host that runs the suite in several modes runs this case of
/// each mode after every other case of all of them.
pub const REMOVES_A_DEVICE: &str = "removal_asks_for_the_device_and_waits_for_its_release";

macro_rules! case_list {
    ($($module:ident :: $name:ident),* $(,)?) => {
        /// The cases written for the guest's devices, instantiated for backend `B`.
        pub fn specific<B: crate::SuiteBackend>() -> Vec<Case<B>> {
            vec![$(Case::new(stringify!($name), $module::$name::<B>)),*]
        }
    };
}

/// Device-agnostic cases left out on a guest device, because a case written
/// for that device proves the same behaviour there and asserts more:
/// (device-agnostic case, device, the case that covers it there).
pub const COVERED: [(&str, &str, &str); 4] = [
    (
        "device_info_is_pci_with_at_least_nine_regions_and_five_irq_indexes",
        "edu",
        "edu_device_info_is_pci_with_nine_regions_and_five_irqs",
    ),
    (
        "irq_flags_follow_the_index",
        "edu",
        "edu_irq_info_for_every_index",
    ),
    (
        "reset_answer_matches_the_reset_flag",
        "edu",
        "edu_reset_matches_the_reset_flag",
    ),
    (
        "reset_answer_matches_the_reset_flag",
        "nvme",
        "nvme_advertises_reset_and_resets",
    ),
];

/// Every case of the suite for backend `B`: the device-specific cases, then
/// each device-agnostic case on `edu`, on the NVMe controller (except where
/// [`COVERED`]) and on each device the mock replays from its capture
/// ([`PROFILED`](crate::PROFILED)), where [`profile::capture_matches_the_committed_profile`]
/// and [`profile::vfio_tool_reads_the_device_as_its_replay`] come first.
pub fn all<B: crate::SuiteBackend>() -> Vec<Case<B>> {
    let mut cases = specific::<B>();
    type Pick = Box<dyn Fn(&crate::Targets) -> vfio_core::PciAddress + Send + Sync>;
    let mut devices: Vec<(&'static str, std::sync::Arc<Pick>)> = vec![
        (
            "edu",
            std::sync::Arc::new(Box::new(|t: &crate::Targets| t.edu)),
        ),
        (
            "nvme",
            std::sync::Arc::new(Box::new(|t: &crate::Targets| t.nvme)),
        ),
    ];
    for (i, name) in crate::PROFILED.iter().enumerate() {
        devices.push((
            name,
            std::sync::Arc::new(Box::new(move |t: &crate::Targets| t.profiled[i])),
        ));
    }
    for (label, pick) in devices {
        if let Some(i) = crate::PROFILED.iter().position(|n| *n == label) {
            cases.push(Case::new(
                format!("capture_matches_the_committed_profile[{label}]"),
                move |env| profile::capture_matches_the_committed_profile(env, i),
            ));
            cases.push(Case::new(
                format!("vfio_tool_reads_the_device_as_its_replay[{label}]"),
                move |env| profile::vfio_tool_reads_the_device_as_its_replay(env, i),
            ));
        }
        for g in crate::generic::all::<B>() {
            if COVERED
                .iter()
                .any(|&(name, on, _)| name == g.name && on == label)
            {
                continue;
            }
            let run = g.run;
            let pick = pick.clone();
            cases.push(Case::new(format!("{}[{label}]", g.name), move |env| {
                run(env, &pick(&env.targets))
            }));
        }
    }
    cases
}

for_each_case!(case_list);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_cases_name_cases_that_exist() {
        let specific: Vec<String> = specific::<vfio_mock::MockBackend>()
            .into_iter()
            .map(|c| c.name)
            .collect();
        let generic: Vec<&str> = crate::generic::all::<vfio_mock::MockBackend>()
            .iter()
            .map(|g| g.name)
            .collect();
        for (name, on, by) in COVERED {
            assert!(generic.contains(&name), "{name}");
            assert!(["edu", "nvme"].contains(&on), "{on}");
            assert!(specific.iter().any(|s| s == by), "{by}");
        }
    }
}
