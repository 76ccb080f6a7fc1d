//! The discrete actions a learned or searching scheduler chooses among.

use serde::{Deserialize, Serialize};

use crate::policy::Action;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionGrid {
    pub functions: Vec<u32>,
    pub memory_mb: Vec<u32>,
}

impl Default for ActionGrid {
    /// Powers of two up to 64 functions; memory at Lambda's 128 MB granularity around the points
    /// where CPU share changes: half and one vCPU (1,769 MB), and 1.7, 3 and 5.8 vCPUs.
    fn default() -> Self {
        Self {
            functions: vec![1, 2, 4, 8, 16, 32, 64],
            memory_mb: vec![512, 1024, 1769, 3008, 5308, 10_240],
        }
    }
}

impl ActionGrid {
    /// Every (functions, memory) pair, functions-major.
    pub fn actions(&self) -> Vec<Action> {
        self.functions
            .iter()
            .flat_map(|&functions| {
                self.memory_mb.iter().map(move |&memory_mb| Action {
                    functions,
                    memory_mb,
                })
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.functions.len() * self.memory_mb.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn index_of(&self, action: Action) -> Option<usize> {
        let f = self.functions.iter().position(|&n| n == action.functions)?;
        let m = self.memory_mb.iter().position(|&m| m == action.memory_mb)?;
        Some(f * self.memory_mb.len() + m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_the_action_list() {
        let grid = ActionGrid::default();
        let actions = grid.actions();
        assert_eq!(actions.len(), grid.len());
        for (i, action) in actions.iter().enumerate() {
            assert_eq!(grid.index_of(*action), Some(i));
        }
        assert_eq!(
            grid.index_of(Action {
                functions: 3,
                memory_mb: 512
            }),
            None
        );
    }
}
